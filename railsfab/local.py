"""Local commands and the processes railsfab starts itself (tracked by PID file, never by name)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from railsfab.errors import RailsfabError


def run(
    argv: Sequence[str | os.PathLike],
    *,
    step: str,
    check: bool = True,
    input: str | bytes | None = None,
    timeout: float | None = None,
    fix: str | None = None,
) -> subprocess.CompletedProcess:
    """Run a local command; on failure raise one RailsfabError with its stderr tail."""
    argv = [os.fspath(a) for a in argv]
    try:
        proc = subprocess.run(
            argv,
            input=input.encode() if isinstance(input, str) else input,
            capture_output=True,
            timeout=timeout,
        )
    except FileNotFoundError:
        raise RailsfabError(
            f"`{argv[0]}` is not installed", step=step, fix=fix or "run scripts/setup as root"
        ) from None
    except subprocess.TimeoutExpired:
        raise RailsfabError(f"`{' '.join(argv)}` did not finish in {timeout:.0f} s", step=step,
                            fix=fix) from None
    if check and proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()[-5:]
        raise RailsfabError(
            f"`{' '.join(argv)}` exited {proc.returncode}: " + " | ".join(tail),
            step=step,
            fix=fix,
        )
    return proc


# --- processes we started -----------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours is not alive for our purposes.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [p.decode(errors="replace") for p in raw.split(b"\0") if p]


class PidFile:
    """The PID of a process we started, and a marker that must be in its command line.

    The marker (a path or port unique to this sandbox) guards against a reused PID: we never
    signal a process whose command line does not carry it.
    """

    def __init__(self, path: Path, marker: str) -> None:
        self.path = path
        self.marker = marker

    def read(self) -> int | None:
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None

    def live_pid(self) -> int | None:
        pid = self.read()
        if pid and pid_alive(pid) and any(self.marker in a for a in cmdline(pid)):
            return pid
        return None

    def write(self, pid: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(f"{pid}\n")

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> bool:
        """Signal our process, wait for it to exit (SIGKILL after timeout). True if one ran."""
        pid = self.live_pid()
        if pid is None:
            self.clear()
            return False
        os.kill(pid, sig)
        if not wait_for(lambda: not pid_alive(pid), timeout):
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not pid_alive(pid), 5)
        _reap(pid)
        self.clear()
        return True


def start_daemon(argv: Sequence[str | os.PathLike], *, pidfile: PidFile, log: Path,
                 cwd: Path | None = None, env: dict[str, str] | None = None) -> int:
    """Start a long-running process in its own session, output to `log`, and record its PID."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [os.fspath(a) for a in argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=cwd,
            env=env,
        )
    pidfile.write(proc.pid)
    return proc.pid


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def wait_for(cond, timeout: float, interval: float = 0.1) -> bool:
    """Poll `cond` until it is true or `timeout` seconds pass; no fixed sleeps elsewhere."""
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def log_tail(log: Path, lines: int = 3) -> str:
    """The last lines of a log, joined on one line for an error message."""
    try:
        return " | ".join(log.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"
