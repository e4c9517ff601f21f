"""The deploy lock: one deploy (or restart, rollback) per app and host at a time."""

from __future__ import annotations

import getpass
import os
import socket
import time

from railsfab import remote
from railsfab.paths import Paths


def holder(command: str) -> dict:
    """Who is taking the lock: shown to whoever is refused."""
    return {"owner": f"{getpass.getuser()}@{socket.gethostname()}", "command": command,
            "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}


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
