"""The sandbox's gem mirror: what rubygems.org would serve Bundler, built from the gems that
Debian's ruby-* packages install (rubygems.org is out of reach on this machine).

Built once per Debian release and package list, in a chroot of the cached base image: the
packages are installed there, `repack_gems.rb` repacks each installed gem with RubyGems' own
Gem::Package (the gems Debian compiled as x86_64-linux platform gems, which load on hosts of
that release without a compiler), and the compact index Bundler 2.3+ asks for (/versions,
/info/NAME) is written next to the .gem files. Cached like the base image, and served
read-only on the sandbox's gateway; a stage points Bundler at it with app.gem_source_mirror.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from importlib.resources import files
from pathlib import Path

from railsfab.local import run, start_daemon
from railsfab.sandbox import image
from railsfab.sandbox.services import Service

RECIPE_VERSION = "1"


def mirror_path(suite: str, packages: list[str]) -> Path:
    key = hashlib.sha256("\n".join([suite, RECIPE_VERSION, *sorted(packages)]).encode())
    return image.cache_dir() / f"gems-{suite}-{key.hexdigest()[:12]}"


def ensure_mirror(suite: str, packages: list[str], log: Path) -> tuple[Path, bool]:
    """(the mirror's folder, built now?). Serialised across processes by a lock file."""
    final = mirror_path(suite, packages)
    if (final / "versions").is_file():
        return final, False
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "versions").is_file():
            return final, False
        work = final.parent / f"{final.name}.tmp-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        try:
            _build(suite, packages, work, log)
            shutil.rmtree(final, ignore_errors=True)
            (work / "mirror").rename(final)
        finally:
            _unmount(work / "root")
            shutil.rmtree(work, ignore_errors=True)
    return final, True


def _build(suite: str, packages: list[str], work: Path, log: Path) -> None:
    root = work / "root"
    work.mkdir(parents=True)
    base, _ = image.ensure_image(log, suite)
    run(["cp", "-a", str(base), str(root)], step="gem mirror", timeout=600)
    debs = image.cache_dir().parent / "apt-archives"
    (debs / "partial").mkdir(parents=True, exist_ok=True)
    for src, dest in (("/proc", "proc"), (str(debs), "var/cache/apt/archives")):
        run(["mount", "--bind", src, str(root / dest)], step="gem mirror")
    (root / "usr/sbin/policy-rc.d").write_text("#!/bin/sh\nexit 101\n")  # start no daemon
    (root / "usr/sbin/policy-rc.d").chmod(0o755)
    # This machine reaches the mirror directly (the hosts go through the sandbox's proxy).
    shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
    chroot = ["chroot", str(root), "env", "DEBIAN_FRONTEND=noninteractive"]
    run([*chroot, "apt-get", "update", "-q"], step="gem mirror", timeout=600)
    run([*chroot, "apt-get", "install", "-y", "-q", "--no-install-recommends", "ruby",
         *packages], step="gem mirror", timeout=1800,
        fix="check that this machine reaches Debian's mirror and that app.packages exist")
    script = files("railsfab.sandbox").joinpath("repack_gems.rb").read_text()
    (root / "tmp/repack_gems.rb").write_text(script)
    run([*chroot, "ruby", "/tmp/repack_gems.rb", "/tmp/mirror"], step="gem mirror",
        timeout=1800)
    mirror = work / "mirror"
    shutil.move(str(root / "tmp/mirror"), mirror)
    write_compact_index(mirror, json.loads((mirror / "index.json").read_text()))


def _unmount(root: Path) -> None:
    for dest in ("var/cache/apt/archives", "proc"):
        subprocess.run(["umount", str(root / dest)], capture_output=True)


def write_compact_index(mirror: Path, gems: list[dict]) -> None:
    """/names, /versions and /info/NAME as rubygems.org serves them (the compact index)."""
    by_name: dict[str, list[dict]] = defaultdict(list)
    for g in gems:
        by_name[g["name"]].append(g)
    (mirror / "info").mkdir(exist_ok=True)
    versions = [f"created_at: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}", "---"]
    for name in sorted(by_name):
        info = "---\n" + "".join(_info_line(g) + "\n" for g in by_name[name])
        (mirror / "info" / name).write_text(info)
        md5 = hashlib.md5(info.encode()).hexdigest()
        versions.append(f"{name} {','.join(_full_version(g) for g in by_name[name])} {md5}")
    (mirror / "versions").write_text("\n".join(versions) + "\n")
    (mirror / "names").write_text("---\n" + "\n".join(sorted(by_name)) + "\n")


def _full_version(g: dict) -> str:
    return g["version"] if g["platform"] == "ruby" else f"{g['version']}-{g['platform']}"


def _requirement(req: str) -> str:
    return "&".join(part.strip() for part in req.split(","))


def _info_line(g: dict) -> str:
    deps = ",".join(f"{n}:{_requirement(r)}" for n, r in g["dependencies"])
    meta = [f"checksum:{g['sha256']}"]
    if g["ruby"] and g["ruby"] != ">= 0":
        meta.append(f"ruby:{_requirement(g['ruby'])}")
    if g["rubygems"] and g["rubygems"] != ">= 0":
        meta.append(f"rubygems:{_requirement(g['rubygems'])}")
    return f"{_full_version(g)} {deps}|{','.join(meta)}"


class GemMirror(Service):
    """The mirror's folder served over HTTP on the gateway, read-only."""

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    def start(self, folder: Path) -> None:
        start_daemon([sys.executable, "-m", "http.server", str(self.port), "--bind",
                      self.address, "--directory", str(folder)],
                     pidfile=self.pidfile, log=self.log)
        self.wait_ready()


def ensure_served(svc: GemMirror, suite: str, packages: list[str],
                  state: Path, extra: Path | None = None) -> tuple[bool, str]:
    """The mirror built (or cached) and served by `svc`, with the .gem files of `extra`;
    restarted when it serves another build (the package list or the extra gems changed)."""
    folder, built = ensure_mirror(suite, packages, state / "log" / "gem-mirror.log")
    if extra is not None:
        from railsfab.sandbox.gem_extra import with_extra

        folder = with_extra(folder, extra, state)
    served = state / "run" / "gems.folder"
    if svc.running() and served.exists() and served.read_text() == str(folder) and not built:
        return False, f"{svc.url} ({folder.name})"
    svc.stop()
    svc.start(folder)
    served.write_text(str(folder))
    count = len(list((folder / "gems").glob("*.gem")))
    return True, f"{svc.url}: {count} gems{' built' if built else ''} from {len(packages)} " \
                 "Debian packages"
