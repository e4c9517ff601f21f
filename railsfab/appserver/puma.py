"""Puma in cluster mode, with two of its own zero-downtime mechanisms, both signals to the
master (systemd's MainPID):

  phased (USR1)  the master stays; it chdirs to `current` (puma.rb's `directory`), then
                 replaces its workers one at a time, each loading the app afresh. The other
                 workers keep serving. Only possible without preload_app, and only when the
                 gems did not change: the master's Bundler setup is inherited by every worker.
  hot (USR2)     the master finishes its requests, then re-execs itself in `current` with
                 the listening socket inherited: new config, new gems. Requests wait in the
                 socket's backlog while it boots (none is refused, a few are slower).

The master's PID survives both, so systemd never loses track of it (Type=notify: RELOADING=1
then READY=1). onhost/puma_restart.sh checks every stage with a deadline: the master is
alive, the configured number of workers booted since the signal, none of the old workers is
left, each runs from the release `current` points to, the unit is active again. At the first
"Unable to start worker" it stops waiting (puma would fork them again forever) and fails with
what the worker said.

An interrupted restart (fab killed, SSH cut) leaves nothing behind to repair: the master
has its signal and finishes the restart by itself, under the same PID. The one hazard is
the next command signalling it while it re-execs (the signal would kill it), so the
script first waits, bounded, until the unit is no longer "reloading" and the master has
its puma title again.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from railsfab import onhost, remote
from railsfab.appserver.base import AppServer

SIGNALS = {"phased": "USR1", "hot": "USR2"}

FAILURES = {
    3: "puma is not running (systemd has no main process for it)",
    4: "the puma master died during the restart",
    5: "the new puma workers cannot load the app",
    6: "the new puma workers did not boot in time",
    7: "systemd no longer tracks the puma master",
    8: ("an earlier restart of the puma master did not end in time",
        "wait for it to end, then run the command again (`fab check` shows the master)"),
    9: "a puma worker does not run the release `current` points to",
}


# The Gemfile lists the sd_notify gem (puma 5's systemd notify, loaded only when listed)
SD_NOTIFY_GEM = r"""^\s*gem\s+["']sd_notify["']"""

class Puma(AppServer):
    name = "puma"
    title = "Puma"
    processes = "^puma[ :]"
    master_pattern = "^puma [0-9]"
    faces_clients = True  # threads and a reactor: slow clients do not tie up its workers

    def notify(self, source: Path) -> bool:
        """Puma >= 6 speaks systemd's notify protocol itself; puma 5 needs the sd_notify gem
        in the bundle (Bundler hides gems it does not list: an installed package is not
        enough)."""
        lock = source / "Gemfile.lock"
        gemfile = source / "Gemfile"
        text = (lock.read_text() if lock.exists() else "") + \
            (gemfile.read_text() if gemfile.exists() else "")
        if re.search(SD_NOTIFY_GEM + r"|^\s{4}sd_notify \(", text, re.M):
            return True
        m = re.search(r"^\s{4}puma \((\d+)\.", text, re.M)
        return bool(m and int(m.group(1)) >= 6)

    def capacity(self) -> str:
        return f"{self.app.workers} workers × {self.app.threads} threads"

    def restart_mode(self, *, gems_changed: bool, config_changed: bool) -> str:
        """Phased when only the app's code changed; hot when puma.rb or the gems changed,
        which a phased restart would not pick up."""
        return "hot" if gems_changed or config_changed else "phased"

    def restart(self, conn, *, mode: str, step: str,
                on_line: Callable[[str], None] | None = None) -> str:
        p, app = self.paths, self.app
        timeout = app.boot_timeout + app.timeout
        env = {"UNIT": p.unit_name, "OUT": p.server_stdout, "ERR": p.server_log,
               "WORKERS": str(app.workers), "TIMEOUT": str(timeout), "CURRENT": p.current,
               "SIG": SIGNALS[mode], "USER_": app.run_user}
        master, n, ready_ms, cwd = remote.checked_script(
            conn, onhost.load("puma_restart.sh"), env, step=step, timeout=timeout + 60,
            failures=FAILURES, fix=f"see {p.server_stdout} and {p.server_log} on the host",
            on_line=on_line)
        return (f"{mode} restart of master {master}: {n} new workers serving "
                f"{cwd.rsplit('/', 1)[-1]}, first up {int(ready_ms) / 1000:.1f}s after "
                f"{SIGNALS[mode]}")
