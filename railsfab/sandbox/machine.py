"""One sandbox host: a copy of the base image booted by systemd-nspawn in its namespace."""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from railsfab.local import PidFile, run, start_daemon
from railsfab.sandbox import cgroups
from railsfab.sandbox.image import ROOT_KEY_OPTIONS

STEP = "host"


@dataclass(frozen=True)
class Machine:
    name: str
    address: str
    root: Path  # the host's file system on this machine
    netns: str
    veth: str
    pidfile: PidFile
    log: Path

    @property
    def running_pid(self) -> int | None:
        return self.pidfile.live_pid()

    def prepare(self, image: Path, *, etc_hosts: str, apt_proxy: str | None,
                authorized_key: str) -> None:
        """A fresh copy of the image, made into this host (name, keys, resolver, proxy)."""
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.root.with_name(self.root.name + ".new")
        shutil.rmtree(tmp, ignore_errors=True)
        run(["cp", "-a", "--reflink=auto", image, tmp], step=STEP)
        r = tmp
        (r / "etc/hostname").write_text(f"{self.name}\n")
        # Without /etc/hosts naming the host, every sudo stalls on a DNS lookup.
        (r / "etc/hosts").write_text(etc_hosts)
        # Loopback-only resolver: no lookups leave the sandbox.
        (r / "etc/resolv.conf").write_text("nameserver 127.0.0.1\n")
        (r / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
        if apt_proxy:
            (r / "etc/apt/apt.conf.d/80railsfab-proxy").write_text(
                f'Acquire::http::Proxy "{apt_proxy}";\n'
            )
        # Nothing to remount in a container; left enabled it fails now and then at boot
        # (seen here) and the host reports "degraded".
        mask = r / "etc/systemd/system/systemd-remount-fs.service"
        mask.unlink(missing_ok=True)
        mask.symlink_to("/dev/null")
        run(["ssh-keygen", "-A", "-f", r], step=STEP)  # host keys of its own, like a new EC2
        uid, gid = _ids(r, "admin")
        _authorize(r / "home/admin/.ssh", authorized_key, uid, gid)
        _authorize(r / "root/.ssh", f"{ROOT_KEY_OPTIONS} {authorized_key}", 0, 0)
        tmp.rename(self.root)

    def record_instance_id(self, instance_id: str | None) -> bool:
        """Where cloud-init keeps an EC2 host's instance id: this host's record in the
        sandbox's AWS endpoint (rewritten if the endpoint was restarted and gave new ids)."""
        path = self.root / "var/lib/cloud/data/instance-id"
        text = f"{instance_id}\n" if instance_id else None
        if (path.read_text() if path.exists() else None) == text:
            return False
        if text is None:
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return True

    def host_key_lines(self) -> list[str]:
        """known_hosts lines for this host, read from the keys generated in prepare()."""
        lines = []
        for pub in sorted((self.root / "etc/ssh").glob("ssh_host_*_key.pub")):
            kind, key = pub.read_text().split()[:2]
            lines.append(f"{self.address} {kind} {key}")
        return lines

    def boot(self, binds: tuple[tuple[Path, str], ...] = ()) -> int:
        argv = [
            "systemd-nspawn", "--quiet",
            "-D", self.root,
            "-b",
            "-M", self.name,
            # No systemd/machined on this machine: without these nspawn exits at once.
            "--register=no", "--keep-unit",
            f"--network-namespace-path=/run/netns/{self.netns}",
            "--resolv-conf=off", "--timezone=off", "--link-journal=no",
            "--console=read-only",
            *(f"--bind={src}:{dest}" for src, dest in binds),
        ]
        return start_daemon(cgroups.wrap(argv, cgroups.create(self.netns)),
                            pidfile=self.pidfile, log=self.log)

    def stop(self) -> bool:
        # SIGTERM makes nspawn shut the container down cleanly.
        stopped = self.pidfile.stop(timeout=30)
        cgroups.remove(self.netns)
        return stopped

    def remove_files(self) -> bool:
        existed = False
        for p in (self.root, self.root.with_name(self.root.name + ".new")):
            if p.exists():
                shutil.rmtree(p)
                existed = True
        return existed


def _ids(root: Path, user: str) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        f = line.split(":")
        if f[0] == user:
            return int(f[2]), int(f[3])
    raise RuntimeError(f"user {user} missing from the base image")


def _authorize(ssh_dir: Path, line: str, uid: int, gid: int) -> None:
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    keys = ssh_dir / "authorized_keys"
    keys.write_text(line.strip() + "\n")
    keys.chmod(0o600)
    for p in (ssh_dir, keys):
        os.chown(p, uid, gid)
