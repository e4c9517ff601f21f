"""Unicorn: preforking, single-threaded workers, one zero-downtime mechanism (USR2).

The unit is Type=forking with PIDFile= pointing at the pid file unicorn.rb writes. A
handover is unicorn's own USR2 re-exec: the old master renames its pid file to `.oldbin`
and forks a new master (same command line, so the same config, whose `working_directory`
and `before_exec` point at `current`), which writes the pid file once it has bound the
socket it inherited. Both masters serve from the same listening socket, so no request is
refused. We then QUIT the old master; systemd sees its main process exit, re-reads PIDFile=
and adopts the new master (it is in the unit's cgroup). No sleeps: every wait is a condition
polled with a deadline (onhost/unicorn_handover.sh), and every stage is checked: the new
master is alive, runs from the release `current` points to, has its workers, the old master
is gone, exactly one master is left, and systemd's MainPID is the new master. If the new
master fails to boot, unicorn restores the old pid file and the old master keeps serving.

A handover interrupted between USR2 and QUIT (fab killed, SSH cut, a USR2 sent by hand)
leaves two masters and `<pid>.oldbin`, and unicorn refuses the next USR2. The script first
finishes such a handover (the new master is up in `current`) or undoes it (QUIT the new
master; the old one restores the pid file), then does the one asked for; the summary says
which. It ignores SIGHUP and SIGPIPE, so a lost SSH session does not stop it halfway.
"""

from __future__ import annotations

from collections.abc import Callable

from railsfab import onhost, remote
from railsfab.appserver.base import AppServer

FAILURES = {
    3: "unicorn is not running (no live master in the pid file)",
    4: "the new unicorn master failed to boot; the old master keeps serving",
    5: "the new unicorn master did not get its workers up in time; the old master keeps serving",
    6: "the old unicorn master did not quit in time",
    7: "systemd did not adopt the new master",
    8: "more than one unicorn master is running",
    9: "the new master does not run the release `current` points to",
    10: ("unicorn refused the USR2 re-exec (another handover is in progress)",
         "wait for it to end, then run the command again"),
    11: ("an interrupted handover could be neither finished nor undone",
         "`fab check` names both masters and what each serves"),
}


def repair_note(repair: str) -> str:
    """What the script did to a handover an earlier command left half done ("-": none)."""
    what, _, pids = repair.partition(":")
    old, _, new = pids.partition(":")
    if what == "finished":
        return f"finished an interrupted handover (old master {old} quit, {new} kept); "
    if what == "undone":
        gone = f"new master {new} quit, " if new != "-" else ""
        return f"undid an interrupted handover ({gone}{old} kept); "
    return ""


class Unicorn(AppServer):
    name = "unicorn"
    title = "Unicorn"
    processes = "^unicorn (master|worker)"
    master_pattern = "^unicorn master"
    # no master, the new one never took over, or unicorn refused to start one
    unchanged_failures = frozenset({3, 4, 5, 10})

    def restart_mode(self, *, gems_changed: bool, config_changed: bool) -> str:
        return "usr2"  # the re-exec'd master loads everything afresh

    @property
    def modes(self) -> tuple[str, ...]:
        return ("usr2",)

    def restart(self, conn, *, mode: str, step: str,
                on_line: Callable[[str], None] | None = None) -> str:
        p, app = self.paths, self.app
        env = {"PIDF": p.pid, "LOG": p.server_log, "UNIT": p.unit_name,
               "WORKERS": str(app.workers), "TIMEOUT": str(app.timeout + 60),
               "CURRENT": p.current, "USER_": app.run_user}
        old, new, nworkers, ready_ms, cwd, repair = remote.checked_script(
            conn, onhost.load("unicorn_handover.sh"), env, step=step,
            timeout=app.timeout + 120, failures=FAILURES,
            fix=f"see {p.server_log} on the host", on_line=on_line)
        return (f"{repair_note(repair)}master {old} -> {new}, {nworkers} workers serving "
                f"{cwd.rsplit('/', 1)[-1]}, first new worker up {int(ready_ms) / 1000:.1f}s "
                "after USR2")
