"""Local commands and the processes railsfab starts itself (tracked by PID file, never by name)."""

from __future__ import annotations

import os
import signal
import socket
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


class PidFile:
    """The PID of a process we started, with its start time to guard against PID reuse.

    We never signal a process whose start time differs from the one recorded when we
    started it. (The command line is no good for this: /proc/PID/cmdline reads empty
    while systemd-nspawn sets up its container.)
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> int | None:
        return self._read()[0]

    def _read(self) -> tuple[int | None, str | None]:
        try:
            fields = self.path.read_text().split()
            return int(fields[0]), (fields[1] if len(fields) > 1 else None)
        except (OSError, ValueError, IndexError):
            return None, None

    def live_pid(self) -> int | None:
        pid, started = self._read()
        if pid and started and pid_alive(pid) and start_time(pid) == started:
            return pid
        return None

    def write(self, pid: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(f"{pid} {start_time(pid)}\n")
        os.replace(tmp, self.path)

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


def start_time(pid: int) -> str | None:
    """Clock ticks after boot at which the process started (field 22 of /proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


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


def port_open(address: str, port: int, timeout: float = 1) -> bool:
    """Does something accept TCP connections there?"""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False
