"""The deploy lock: one deploy (or restart, rollback) per app and host at a time.

A directory on the host (mkdir is atomic: of several concurrent deploys exactly one gets
it) holding who took it. Released at the end of the run, on failure and on Ctrl-C. A lock
left by a railsfab process of the same user on this machine that no longer runs (a
killed deploy) is taken over, and the output says so; anything else needs
`fab lock.release`.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import time

from railsfab import onhost, remote
from railsfab.errors import RailsfabError
from railsfab.paths import Paths


def holder(command: str) -> dict:
    """Who is taking the lock: shown to whoever is refused."""
    return {"owner": f"{getpass.getuser()}@{socket.gethostname()}", "command": command,
            "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}


def is_stale(held: dict, me: dict) -> bool:
    """Left by a railsfab process of ours, on this machine, that has died."""
    pid = held.get("pid")
    if held.get("owner") != me["owner"] or not isinstance(pid, int):
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


def release(conn, paths: Paths, step: str = "lock") -> bool:
    """Remove the lock; True if there was one."""
    r = remote.sh(conn, f"test -d {paths.lock} && rm -rf {paths.lock} && echo released || true",
                  sudo=True, step=step)
    return "released" in r.stdout


def read(conn, paths: Paths) -> str | None:
    r = remote.sh(conn, f"cat {paths.lock}/holder.json 2>/dev/null || true", sudo=True,
                  step="lock")
    return r.stdout.strip() or None
