"""Assets built once per release, the same files on every host.

Each host precompiling on its own costs N times the CPU, and behind an ALB two hosts whose
digests differ break pages: one host's page asks another for an asset it does not have
(Capistrano's classic bug; Kamal avoids it by building into the image). So one host (the
builder: the first that needs it) runs `assets:precompile`; railsfab reads its
public/assets back (checked here: regular files and folders under assets/ only, repacked
by railsfab, never the host's archive as it came), keeps it under
.railsfab/assets/<stage>/<asset inputs digest>.tar.gz, and every other host unpacks that
archive into its new release: no precompile, no node there. A later release with the same
asset inputs takes the previous release's assets (when every host's are one build: their
asset manifests, read with the facts, are the same) or the kept archive, and builds
nowhere; hosts whose assets are not one build (precompiled each on its own, by hand or by
an older railsfab) all receive one build.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import os
import tarfile
import threading
from pathlib import Path

from railsfab import remote
from railsfab.errors import RailsfabError
from railsfab.ops.base import Change, NoChange, Planned
from railsfab.ops.desired import Desired
from railsfab.ops.release import as_deploy_user, open_public, precompile

KEEP = 3  # archives kept per stage
LIMIT = 1 << 30  # the most the built assets may take, unpacked
WAIT = 2400  # the longest a host waits for the builder (its precompile may take 1800 s)


class Shared:
    """The one build of this release's assets: set once by the builder (or from the kept
    archive), read by every other host's assets step."""

    def __init__(self, d: Desired, kept: Path, builder: str | None,
                 build: tuple[bytes, int, str] | None = None) -> None:
        """`build`: the kept archive (data, files, build id) when no host builds."""
        self.d, self.kept, self.builder = d, kept, builder
        self.data: bytes | None = None
        self.files, self.id = 0, ""
        self.error: str | None = None
        self.ready = threading.Event()
        if builder is None and build:
            self.data, self.files, self.id = build
            self.ready.set()

    def settle(self, host: str) -> None:
        """`host`'s prepare ended: if it was the builder and built nothing, the hosts
        waiting for its build stop waiting."""
        if host == self.builder and not self.ready.is_set():
            self.error = f"{host}, which builds this release's assets, failed before it did"
            self.ready.set()

    def built(self, r) -> str:
        """The builder's step, after its precompile: public/assets read back, checked,
        repacked and kept."""
        rel = self.d.paths.release(self.d.release)
        try:
            out = remote.sh(r.conn, as_deploy_user(
                self.d, f"cd {rel}/public && tar -czf - assets | base64 -w0"), sudo=True,
                step="assets", timeout=600).stdout
            self.data, self.files, self.id = repack(base64.b64decode(out), r.name)
        except (RailsfabError, ValueError) as exc:
            self.error = f"{r.name}'s assets could not be read back: {exc}"
            self.ready.set()
            raise RailsfabError(self.error, host=r.name, step="assets") from None
        _keep(self.kept, self.data)
        self.ready.set()
        return (f"assets:precompile, once for the release: {self.files} files "
                f"({len(self.data) // 1024} KiB) kept for the other hosts")

    def receive(self, r) -> str:
        """Another host's step: the one build unpacked into its new release."""
        if not self.ready.wait(WAIT):
            raise RailsfabError(f"{self.builder}'s assets build did not finish in {WAIT} s",
                                host=r.name, step="assets")
        if self.data is None:
            raise RailsfabError(self.error or "the assets build failed", host=r.name,
                                step="assets", fix=f"see {self.builder}'s assets step above")
        rel = self.d.paths.release(self.d.release)
        remote.sh(r.conn, as_deploy_user(
            self.d, f"umask 022 && mkdir -p {rel}/public && cd {rel}/public && rm -rf assets "
            f"&& tar -xzf - && {open_public(rel)}"), sudo=True, step="assets",
            stdin=self.data, timeout=600)
        source = f"{self.builder}'s build" if self.builder else "the build kept for these inputs"
        return f"{self.files} files from {source}: no precompile here"


def arrange(d: Desired, plans: dict[str, dict], cache: Path,
            builds: dict[str, str | None] | None = None) -> Shared | None:
    """Rewrite the prepare plans so that at most one host precompiles (none when this
    release's assets were built before): the Shared build they meet at, or None when no
    host precompiles. `builds`: the assets build id each host's current release has (its
    facts); hosts that would reuse their previous assets receive the one build too when
    those are not all one build, or not the build the others receive."""
    needs = [n for n, p in plans.items() if isinstance(p["prepare"].get("assets"), Change)]
    reusing = [n for n, p in plans.items() if _reuses(p["prepare"].get("assets"))]
    kept = cache / f"{d.digests.assets}.tar.gz"
    data = kept.read_bytes() if kept.is_file() else b""
    files, kept_id = _count(data) if data else (0, None)
    ids = {(builds or {}).get(n) for n in reusing}
    one = len(ids) == 1 and None not in ids
    if reusing and not (one and (not needs or ids == {kept_id})):
        needs, why = needs + reusing, _why(reusing, builds or {})
    else:
        why = ""
    if not needs:
        return None
    builder = None if kept_id else needs[0]
    shared = Shared(d, kept, builder, None if builder else (data, files, kept_id))
    for n in needs:
        prepare = plans[n]["prepare"]
        at = next(i for i, p in enumerate(prepare.steps) if p.step == "assets")
        o = prepare.steps[at].outcome
        if n == builder:
            o = o if isinstance(o, Change) else precompile(d)
            new = dataclasses.replace(o, what=f"{o.what} (once: the other hosts receive it)"
                                      + (why if n in reusing else ""), run=shared.built)
        else:
            source = f"{builder}'s build" if builder else f"the build kept in {kept.parent}"
            new = Change(f"unpack the assets from {source} (no precompile here)"
                         + (why if n in reusing else ""), disturbs=False, run=shared.receive)
        prepare.steps[at] = Planned("assets", new)
    return shared


def _reuses(o) -> bool:
    """The assets step reuses the previous release's (asset inputs unchanged)."""
    return isinstance(o, NoChange) and bool(o.scripts)


def _why(reusing: list[str], builds: dict[str, str | None]) -> str:
    said = ", ".join(f"{n} {(builds.get(n) or 'none')[:12]}" for n in reusing)
    return f"; asset inputs unchanged, but the hosts' assets are not one build ({said})"


def repack(data: bytes, host: str) -> tuple[bytes, int, str]:
    """The builder's archive as railsfab ships it: only folders and regular files under
    assets/, plain names, bounded size; anything else refuses the build (it came from a
    host, where the app's code ran). Also its files' count and the build's id: the sha256
    of its asset manifest, as the facts and fab check read it on the hosts."""
    out, files, total, build = io.BytesIO(), 0, 0, ""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as src, \
            tarfile.open(fileobj=out, mode="w:gz", compresslevel=6) as dst:
        for m in src:
            name = _checked(m, host)
            total += m.size
            if total > LIMIT:
                raise ValueError(f"{host}'s public/assets is over {LIMIT >> 20} MiB")
            info = tarfile.TarInfo(name)
            info.mtime = m.mtime
            if m.isdir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                dst.addfile(info)
                continue
            body = src.extractfile(m).read()
            build = build or _manifest_sha(name, body)
            info.size, info.mode = len(body), 0o644
            dst.addfile(info, io.BytesIO(body))
            files += 1
    return out.getvalue(), files, build


def _manifest_sha(name: str, body: bytes) -> str:
    """The sha256 of `body` when `name` is the asset manifest (directly in assets/), else
    "" (the pipelines' names: railsfab/onhost/manifest.py)."""
    from railsfab.onhost.manifest import MANIFEST_NAMES

    leaf = name.removeprefix("assets/")
    if "/" in leaf or not any(p.fullmatch(leaf) for p in MANIFEST_NAMES):
        return ""
    return hashlib.sha256(body).hexdigest()


def _checked(m: tarfile.TarInfo, host: str) -> str:
    name = m.name.rstrip("/")
    parts = name.split("/")
    if parts[0] != "assets" or ".." in parts or "" in parts or not name.isprintable():
        raise ValueError(f"{host}'s public/assets has {name!r}: not a plain path")
    if not (m.isdir() or m.isfile()):
        raise ValueError(f"{host}'s public/assets has {name!r}, which is not a file "
                         "or folder (railsfab ships regular files only)")
    return name


def _count(data: bytes) -> tuple[int, str]:
    """A kept archive's files and its build id (its manifest's sha256)."""
    files, build = 0, ""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as t:
        for m in t:
            if m.isfile():
                files += 1
                build = build or _manifest_sha(m.name, t.extractfile(m).read())
    return files, build


def _keep(kept: Path, data: bytes) -> None:
    kept.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = kept.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, kept)
    old = sorted(kept.parent.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime, reverse=True)
    for p in old[KEEP:]:
        p.unlink(missing_ok=True)
