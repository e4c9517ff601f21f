"""The deploy lock: one deploy (or restart, rollback) per app and host at a time.

A directory on the host (mkdir is atomic: of several concurrent deploys exactly one gets
it) holding who took it and a token only its taker knows. Released at the end of the run,
on failure and on Ctrl-C, by its token (a run never drops another's lock). A lock left by a
railsfab process of the same user on this machine (its machine id: containers and CI
runners may share a hostname) that no longer runs is taken over, atomically, and the output
says so; anything else needs `fab lock.release`.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import socket
import time

from railsfab import onhost, remote
from railsfab.errors import RailsfabError
from railsfab.paths import Paths


def machine_id() -> str:
    """This machine's identity (systemd's machine-id, else its boot id): a hostname is not
    one (containers and CI runners share them)."""
    for f in ("/etc/machine-id", "/var/lib/dbus/machine-id", "/proc/sys/kernel/random/boot_id"):
        try:
            text = open(f).read().strip()
        except OSError:
            continue
        if text:
            return text
    return socket.gethostname()


def holder(command: str) -> dict:
    """Who is taking the lock (shown to whoever is refused), and its token."""
    return {"owner": f"{getpass.getuser()}@{socket.gethostname()}", "machine": machine_id(),
            "command": command, "pid": os.getpid(), "token": secrets.token_hex(16),
            "since": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}


def is_stale(held: dict, me: dict) -> bool:
    """Left by a railsfab process of ours, on this machine, that has died."""
    pid = held.get("pid")
    if (held.get("owner"), held.get("machine")) != (me["owner"], me.get("machine")) \
            or not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def acquire(conn, paths: Paths, me: dict, *, steal_if: dict | None = None,
            step: str = "lock") -> None:
    """Take the lock in one round trip (taking over a stale one of ours), or raise."""
    req = {"path": paths.lock, "holder": me, "steal_if": steal_if}
    got = json.loads(remote.sh(conn, "sudo -n python3 -", step=step,
                               stdin=onhost.python_call("facts.py", "lock_only", req)).stdout)
    if got["acquired"]:
        return
    if steal_if is None and is_stale(got["holder"], me):
        return acquire(conn, paths, me, steal_if=got["holder"], step=step)
    host = getattr(conn, "railsfab_host", None)
    raise refused(host.name if host else "?", got["holder"])


def refused(host: str, held: dict) -> RailsfabError:
    return RailsfabError(
        f"another deploy holds the lock on {host}: {describe(held)}",
        host=host, step="lock", state="nothing changed",
        fix=("wait for it to finish; if it died, clear it with "
             f"`fab lock.release --only {host}`"))


def describe(h: dict) -> str:
    return (f"{h.get('owner', '?')} ({h.get('command', '?')}, pid {h.get('pid', '?')}) "
            f"since {h.get('since', '?')}")


def release(conn, paths: Paths, me: dict | None = None, step: str = "lock") -> bool:
    """Remove our lock (`me`: the holder we took it as; None: whoever holds it, for
    `fab lock.release`); True if a lock was removed."""
    req = {"path": paths.lock, "token": (me or {}).get("token"), "force": me is None}
    got = json.loads(remote.sh(conn, "sudo -n python3 -", step=step,
                               stdin=onhost.python_call("facts.py", "release_lock", req)).stdout)
    return bool(got["released"])


def read(conn, paths: Paths) -> dict | None:
    r = remote.sh(conn, f"cat {paths.lock}/holder.json 2>/dev/null || true", sudo=True,
                  step="lock")
    try:
        return json.loads(r.stdout) if r.stdout.strip() else None
    except ValueError:
        return {"owner": "unknown (unreadable holder file)"}
