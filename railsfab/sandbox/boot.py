"""Booting sandbox hosts: a fresh copy of the base image each, a few booting at a time, and
one whose systemd comes up degraded booted again from a fresh copy.

Many containers starting at the same moment race in systemd's cgroup setup: now and then a
unit of one fails with 219/CGROUP (seen: systemd-tmpfiles-setup-dev.service, 8 web hosts
and a db booting at once) and the host reports "degraded". So at most CONCURRENT_BOOTS hosts
are between "nspawn started" and "systemd finished booting" at once (the copies, network
links and SSH checks of the others go on meanwhile), and a host that still comes up degraded
is removed and booted again, up to BOOT_ATTEMPTS times, naming the units that failed.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from railsfab import remote
from railsfab.errors import RailsfabError
from railsfab.inventory import Host, Inventory
from railsfab.local import log_tail, port_open, wait_for
from railsfab.sandbox import image, network
from railsfab.sandbox.machine import Machine

if TYPE_CHECKING:
    from fabric import Connection

    from railsfab.sandbox.core import Sandbox

BOOT_TIMEOUT = 90
CONCURRENT_BOOTS = 3
BOOT_ATTEMPTS = 3


class Booter:
    def __init__(self, sbx: Sandbox) -> None:
        self.sbx = sbx
        self._slots = threading.BoundedSemaphore(CONCURRENT_BOOTS)

    def fresh(self, host: Host) -> tuple[Connection, list[str]]:
        """Boot `host` from a fresh copy until its systemd is "running": an open connection,
        and what went wrong with the attempts before (empty when the first one worked)."""
        m = self.sbx.machines[host.name]
        tries: list[str] = []
        for _ in range(BOOT_ATTEMPTS):
            self._prepare(m)
            with self._slots:
                self._start(m)
                conn = connect_when_booted(self.sbx.inv, host, m)
                state = wait_system_running(conn)
            if state == "running":
                return conn, tries
            tries.append(f"{state}: {', '.join(failed_units(conn)) or 'no failed unit'}")
            conn.close()
        raise RailsfabError(
            f"systemd came up degraded {BOOT_ATTEMPTS} times on fresh copies ("
            + "; ".join(tries) + ")", host=host.name, step="boot",
            fix=f"see the host's console log {m.log}; `fab sandbox.up` tries again")

    def connect(self, host: Host) -> Connection:
        """A connection to a host that was already running; its systemd must be "running"."""
        conn = connect_when_booted(self.sbx.inv, host, self.sbx.machines[host.name])
        state = wait_system_running(conn)
        if state != "running":
            failed = failed_units(conn)
            conn.close()
            raise RailsfabError(
                f"systemd reports '{state}' after boot; failed units: {'; '.join(failed)}",
                host=host.name, step="ssh",
                fix=f"`ssh -F {self.sbx.ssh_config} {host.name} systemctl --failed` shows "
                    f"which unit failed; `fab sandbox.down` then `fab sandbox.up` rebuilds it")
        return conn

    def _prepare(self, m: Machine) -> None:
        """Clear whatever is left of this host (a killed run, a crashed container), copy the
        image afresh, link it to the bridge."""
        sbx = self.sbx
        m.stop()
        network.remove_host_link(m.netns, m.veth)
        m.prepare(
            image.image_path(sbx.suite),
            etc_hosts=sbx._etc_hosts(m.name),
            apt_proxy=sbx.inv.stage.apt_proxy,
            authorized_key=sbx.key.with_suffix(".pub").read_text(),
        )
        m.record_instance_id(sbx.instance_id(m.name))
        network.create_host_link(m.netns, m.veth, sbx.cfg.bridge, m.address,
                                 sbx.net.prefixlen, sbx.cfg.gateway)
        sbx._set_known_hosts(m.address, m.host_key_lines())

    def _start(self, m: Machine) -> None:
        # Its own /var/cache/apt/archives (no bind): packages come through the gateway's
        # .deb cache, so hosts install at the same time, each .deb fetched once per machine.
        m.boot()

        def ssh_up() -> bool:
            if m.running_pid is None:
                raise RailsfabError(f"systemd-nspawn exited: {log_tail(m.log)}", host=m.name,
                                    step="boot", fix=f"see {m.log}")
            return port_open(m.address, 22)

        if not wait_for(ssh_up, BOOT_TIMEOUT, interval=0.2):
            raise RailsfabError(f"no SSH on {m.address}:22 within {BOOT_TIMEOUT} s",
                                host=m.name, step="boot", fix=f"see {m.log}")


def connect_when_booted(inv: Inventory, host: Host, m: Machine) -> Connection:
    """SSH in, retrying while a just-booted host's sshd settles; key problems fail at once."""
    deadline = time.monotonic() + BOOT_TIMEOUT
    while True:
        try:
            return remote.open_checked(inv, host)
        except RailsfabError as exc:
            if exc.message.startswith("cannot reach") and time.monotonic() < deadline:
                time.sleep(0.5)
                continue
            failed = [ln for ln in m.log.read_text(errors="replace").splitlines()
                      if "FAILED" in ln or "Failed" in ln] if m.log.exists() else []
            exc.message += ("; console: " + " | ".join(failed[-3:])) if failed else ""
            exc.fix = f"see the host's console log {m.log}"
            raise


def wait_system_running(conn: Connection) -> str:
    r = remote.sh(conn, f"timeout {BOOT_TIMEOUT} systemctl is-system-running --wait",
                  step="ssh", warn=True)
    return r.stdout.strip() or "unknown"


def failed_units(conn: Connection) -> list[str]:
    out = remote.sh(conn, "systemctl --failed --plain --no-legend", step="ssh",
                    warn=True).stdout
    return [ln.split()[0] for ln in out.splitlines() if ln.strip()]
