"""The cached Debian base images (12 "bookworm", 13 "trixie") sandbox hosts are copied from.

Built once with debootstrap into a temporary folder and renamed when complete, so a
half-built image is never used; kept across `sandbox.down` and reused by every sandbox and
test run on the machine. It looks like a Debian EC2 AMI: an `admin` user with passwordless
sudo, root SSH login disabled, no host keys (each host generates its own).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
from pathlib import Path

from railsfab.local import pid_alive, run

SUITES = {12: "bookworm", 13: "trixie"}
SUITE = SUITES[12]  # the default
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "openssh-server", "python3", "iproute2",
    "ca-certificates", "sudo", "curl", "zstd", "less",
)
# Bump when the customisation below changes, so a stale cached image is not reused.
RECIPE_VERSION = "4"
CACHE_ENV = "RAILSFAB_IMAGE_CACHE"
DEFAULT_CACHE = Path("/var/cache/railsfab/images")

SSHD_CONFIG = """\
# railsfab sandbox: like Debian's EC2 images, key login for the admin user only.
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
"""

# EC2's Debian images answer root logins with this instead of a shell.
ROOT_KEY_OPTIONS = (
    'no-port-forwarding,no-agent-forwarding,no-X11-forwarding,'
    'command="echo \'Please login as the user \\"admin\\" rather than the user \\"root\\".\';'
    'echo;sleep 1;exit 142"'
)


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def image_key(suite: str = SUITE) -> str:
    digest = hashlib.sha256(
        "\n".join([suite, *PACKAGES, RECIPE_VERSION]).encode()
    ).hexdigest()[:12]
    return f"debian-{suite}-{digest}"


def image_path(suite: str = SUITE) -> Path:
    return cache_dir() / image_key(suite)


def ensure_image(log: Path, suite: str = SUITE) -> tuple[Path, bool]:
    """Return (image folder, built now?). Serialised across processes by a lock file."""
    final = image_path(suite)
    if final.is_dir():
        return final, False
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if final.is_dir():  # another process built it while we waited
            return final, False
        _remove_abandoned_builds(final.parent)
        tmp = final.parent / f"{final.name}.tmp-{os.getpid()}"
        argv = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
                suite, str(tmp)]
        mirror = local_debian_mirror()
        if mirror:
            argv.append(mirror)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            out.write(f"$ {' '.join(argv)}\n".encode())
        run(argv, step="base image", timeout=1200,
            fix="check that this machine reaches Debian's package mirror, then run it again")
        _customise(tmp)
        tmp.rename(final)
    return final, True


def _customise(root: Path) -> None:
    def chroot(*argv: str) -> None:
        run(["chroot", str(root), *argv], step="base image", timeout=600)

    chroot("useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo", "admin")
    sudoers = root / "etc/sudoers.d/90-admin"
    sudoers.write_text("admin ALL=(ALL) NOPASSWD:ALL\n")
    sudoers.chmod(0o440)
    (root / "etc/ssh/sshd_config.d/50-railsfab.conf").write_text(SSHD_CONFIG)
    # Like an EC2 AMI (debootstrap writes the release alone): its updates and security
    # suites too, which move packages such as Ruby to their patched versions.
    (root / "etc/apt/sources.list").write_text(_sources(root))
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    # Package lists in the image, so hosts can `apt-get install` without a first update.
    chroot("apt-get", "update", "-qq")
    chroot("apt-get", "clean")
    (root / "etc/machine-id").write_text("")
    for f in ("etc/hostname", "etc/resolv.conf"):
        (root / f).unlink(missing_ok=True)


def _sources(root: Path) -> str:
    """sources.list with the release (as debootstrap wrote it), -updates and -security."""
    deb = next(ln for ln in (root / "etc/apt/sources.list").read_text().splitlines()
               if ln.startswith("deb "))
    _, mirror, suite, *components = deb.split()
    security = mirror.rstrip("/").rsplit("/debian", 1)[0] + "/debian-security"
    comps = " ".join(components)
    return (f"deb {mirror} {suite} {comps}\ndeb {mirror} {suite}-updates {comps}\n"
            f"deb {security} {suite}-security {comps}\n")


def _remove_abandoned_builds(folder: Path) -> None:
    for tmp in folder.glob("*.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if not (pid.isdigit() and pid_alive(int(pid))):
            shutil.rmtree(tmp, ignore_errors=True)


def local_debian_mirror() -> str | None:
    """The Debian mirror this machine's apt uses (for any Debian suite it lists: the same
    mirror carries every release), so images come from the same place."""
    sources = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
    for f in sources:
        try:
            text = f.read_text()
        except OSError:
            continue
        if f.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(
                    (k.strip().lower(), v.strip())
                    for k, _, v in (ln.partition(":") for ln in stanza.splitlines())
                    if not k.startswith("#") and v
                )
                suites = fields.get("suites", "").split()
                if set(suites) & set(SUITES.values()) and fields.get("enabled", "yes") != "no":
                    return fields.get("uris", "").split()[0] or None
        else:
            for ln in text.splitlines():
                parts = re.sub(r"\[[^]]*\]", " ", ln).split()
                if len(parts) >= 3 and parts[0] == "deb" and parts[2] in SUITES.values():
                    return parts[1]
    return None
