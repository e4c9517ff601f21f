"""The work of steps that is more than a script: app server starts and restarts that count
as done only once the server answers, and marks of when things happened (for claims such as
"no gap" that the output may make only from a measurement)."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from railsfab import gems, onhost, remote
from railsfab.appserver import AppServer
from railsfab.errors import RailsfabError
from railsfab.text import printable, printable_lines

if TYPE_CHECKING:
    from railsfab.executor import HostRun
    from railsfab.inventory import Database

Run = Callable[["HostRun"], str | None]


def _ready(r: HostRun, server: AppServer, step: str) -> int:
    ms = server.wait_serving(r.conn, step=step, on_line=r.progress)
    r.marks["ready"] = time.monotonic()
    return ms


def _systemctl(r: HostRun, server: AppServer, script: str) -> None:
    """Start or restart the unit; on failure the server's own words are the evidence."""
    app, p = server.app, server.paths
    try:
        remote.sh(r.conn, script, sudo=True, step=server.name,
                  timeout=app.boot_timeout + 120, on_line=r.progress)
    except RailsfabError as exc:
        # puma's workers say why they could not load the app on its stdout log; a Ruby
        # backtrace's "from ..." lines would push the exception's own line out of view
        logs = list(dict.fromkeys((p.server_stdout, p.server_log)))
        # read as the app's user: the logs are in its folder (a link there shows nothing)
        tails = "; ".join(f"runuser -u {shlex.quote(app.run_user)} -- tail -n 300 {log} "
                          "2>/dev/null | grep -v '^[[:space:]]*from ' | tail -n 10"
                          for log in logs)
        tail = remote.sh(r.conn, f"{tails}; journalctl -u {p.unit_name} -n 5 --no-pager -q",
                         sudo=True, step=server.name, timeout=30, warn=True).stdout.strip()
        if tail:
            exc.message += f"\n{printable_lines(tail.splitlines())}"
        exc.fix = f"see {' and '.join(logs)} on {r.host.name}"
        raise


# Client connections to nginx still open (from anywhere but the host itself).
CLIENTS = ("ss -Htn state established '( sport = :80 or sport = :443 )' | "
           "grep -vcE ' (127\\.0\\.0\\.1|\\[::1\\]):[0-9]+ *$' || true")


def _idle(r: HostRun, server: AppServer) -> None:
    """Before a full restart (a gap) on a host drained from the target group: its last
    clients' connections closed first, as the load balancer closes them once their requests
    are answered (bounded by the deregistration delay). The target group saying "drained" is
    not enough where it says so at once (an endpoint without draining, or the moment before
    the balancer stops sending)."""
    bound = (r.drained or 0) + 5
    remote.sh(r.conn, f"end=$(( $(date +%s) + {bound} )); while [ \"$({CLIENTS})\" != 0 ] "
              "&& [ \"$(date +%s)\" -lt \"$end\" ]; do sleep 0.1; done",
              sudo=True, step=server.name, timeout=bound + 30, warn=True)


def systemctl(server: AppServer, verb: str, enable: bool) -> Run:
    """`systemctl start` or `restart` the server's unit (enabling it first if need be); done
    only once the server answers."""
    def run(r: HostRun) -> None:
        unit = server.paths.unit_name
        if verb == "restart" and r.drained is not None and server.app.nginx:
            _idle(r, server)
        r.restarted = True
        _systemctl(r, server, (f"systemctl enable -q {unit} && " if enable else "")
                   + (f"{stop_failing(unit)} && " if verb == "start" else "")
                   + f"systemctl {verb} {unit}")
        _ready(r, server, server.name)
    return run


def stop_failing(unit: str) -> str:
    """A unit that is not active may be crash-looping: a start would join the start job
    under way (which runs what was there before, and fails) or be refused after too many
    restarts. Stop it and clear its failed state, so the start runs what is there now."""
    return (f"if ! systemctl is-active -q {unit}; then systemctl stop {unit}; "
            f"systemctl reset-failed {unit} 2>/dev/null || true; fi")


def handover(server: AppServer, mode: str, enable: bool, *, summary: str = "") -> Run:
    def run(r: HostRun) -> str:
        if enable:
            remote.sh(r.conn, f"systemctl enable -q {server.paths.unit_name}", sudo=True,
                      step=server.name)
        try:
            said = server.restart(r.conn, mode=mode, step=server.name, on_line=r.progress)
        except RailsfabError as exc:
            # Did the failed restart leave the server changed? Then a revert restarts it.
            if exc.exited not in server.unchanged_failures:
                r.restarted = r.restart_failed = True
            raise
        r.restarted = True  # it runs what `current` points to now: a revert restarts it
        _ready(r, server, server.name)
        return f"{summary}: {said}" if summary else said
    return run


def script_marked(script: str, *, mark: str, unit: str | None = None) -> Run:
    """`script` as root, its end marked; with `unit`, a failure says what the unit's journal
    said (systemctl itself only says that it failed)."""
    def run(r: HostRun) -> None:
        try:
            remote.sh(r.conn, script, sudo=True, step=mark, on_line=r.progress)
        except RailsfabError as exc:
            if unit:
                said = remote.sh(r.conn, f"journalctl -u {unit} -n 5 --no-pager -q -o cat",
                                 sudo=True, step=mark, timeout=30, warn=True).stdout
                if said.strip():
                    exc.message += f"\n{printable_lines(said.splitlines())}"
            raise
        r.marks[mark] = time.monotonic()
    return run


def revert(server: AppServer, *, gems_changed: bool, config_changed: bool) -> Run:
    """After a failed activation, with `current` back on the old release: restart the
    server from it with its own zero-downtime mechanism while its master lives (the mode a
    deploy would choose for what changed back; a puma whose phased restart failed is still
    "reloading", and serving), else from scratch."""
    def run(r: HostRun) -> str:
        unit = server.paths.unit_name
        pid = remote.sh(r.conn, f"p=$(systemctl show -p MainPID --value {unit}); "
                        "[ \"${p:-0}\" != 0 ] && kill -0 \"$p\" && echo \"$p\"", sudo=True,
                        step="revert", warn=True).stdout.strip()
        r.restarted = True
        if pid:
            # A restart that failed halfway (puma forking workers that cannot load the app,
            # from the release it chdir'd to) ends only with a full re-exec.
            mode = server.restart_mode(gems_changed=gems_changed or r.restart_failed,
                                       config_changed=config_changed)
            said = (f"zero-downtime {mode} restart: "
                    + server.restart(r.conn, mode=mode, step="revert", on_line=r.progress))
        else:
            # A unit that crash-loops is "activating": its start job is stopped first.
            _systemctl(r, server, f"{stop_failing(unit)} && systemctl restart {unit}")
            said = f"restarted {unit} (no master was running: a short gap)"
        server.wait_serving(r.conn, step="revert", on_line=r.progress)
        return said
    return run


def runs_release(server: AppServer, release: str) -> Run:
    """Read, not assumed: every process of the app server runs from `release` (its working
    directory), so what answers is that release."""
    def run(r: HostRun) -> str:
        want = server.paths.release(release)
        script = (f"for p in $(pgrep -u {shlex.quote(server.app.run_user)} -f "
                  f"{shlex.quote(server.processes)}); do "
                  "printf '%s %s\\n' \"$p\" \"$(readlink /proc/$p/cwd)\"; done")
        out = remote.sh(r.conn, script, sudo=True, step="release", warn=True).stdout
        procs = [line.partition(" ")[::2] for line in out.splitlines()]
        procs = [(pid, cwd) for pid, cwd in procs if pid.isdigit()]
        elsewhere = [(pid, cwd) for pid, cwd in procs if cwd != want]
        if procs and not elsewhere:
            return f"{len(procs)} {server.title} processes run releases/{release}"
        said = ("no process of it is running" if not procs else "; ".join(
            f"{pid} runs in {printable(cwd)}" for pid, cwd in elsewhere[:3]))
        raise RailsfabError(f"{server.title} does not run releases/{release}: {said}",
                            host=r.name, step="release",
                            fix=f"`fab restart-app -o {r.name}` starts it from `current`")
    return run


def bundle(script: str, release: str, *, debian: str) -> Run:
    """`bundle install --local`; when it cannot find gems, ask the host which Debian package
    provides each (or that none does), and say so in the failure."""
    def run(r: HostRun) -> None:
        try:
            remote.sh(r.conn, script, sudo=True, step="bundle", on_line=r.progress)
        except RailsfabError as exc:
            missing = gems.missing_gems(exc.message)
            if not missing:
                raise
            out = remote.sh(r.conn, f"GEMS={shlex.quote(' '.join(missing))} sh -s",
                            step="bundle", stdin=onhost.load("gem_packages.sh").encode(),
                            warn=True).stdout
            exc.message, exc.fix = gems.missing_gems_message(
                out, release=debian, bundler_output=exc.message)
            raise
    return run


MIGRATION_FIX = "fix the migration, then deploy again (no host switched release)"


def migrate(script: str, db: Database, app: str) -> Run:
    """The release's own Rails says which database it will migrate (onhost/migrate.rb) and
    migrates it; when that is not the stage's, the failure says which file decides it."""
    def run(r: HostRun) -> None:
        try:
            remote.sh(r.conn, script, sudo=True, step="migrate", on_line=r.progress,
                      stdin=onhost.load("migrate.rb").encode())
        except RailsfabError as exc:
            exc.message, exc.fix = migrate_failure(exc.message, db, app)
            raise
    return run


def migrate_failure(message: str, db: Database, app: str) -> tuple[str, str]:
    """(message, fix) of a failed migrate step, from what the release printed."""
    said = next((line.split(":", 1)[1] for line in message.splitlines()
                 if line.startswith("railsfab-database:")), None)
    if said is None:
        return message, MIGRATION_FIX
    try:
        got = json.loads(said)
        host, name, user = (printable(str(x)) for x in got["got"])
        file, env = printable(str(got["file"])), printable(str(got["env"]))
    except (ValueError, KeyError, TypeError):
        return message, MIGRATION_FIX
    stage = f"{db.user}@{db.host}/{db.name}"
    message = (f"the release would migrate {user or '(no user)'}@{host or '(local socket)'}/"
               f"{name or '(no database)'}, not the stage's database {stage}: {file} decides "
               f"it (its {env} entry); nothing was migrated")
    if file.startswith("config/database.yml ("):
        fix = (f"correct the linked file {file.split('a link to ', 1)[1].rstrip(')')} "
               "(app.linked_files) or database: in hosts.yaml")
    elif file == "config/database.yml":
        fix = (f"let {app}'s config/database.yml {env} entry take DATABASE_URL (which railsfab "
               "sets from database: in hosts.yaml; Rails merges it over host, database and "
               "username, but not over a `url:` of the entry), or correct database: in "
               "hosts.yaml")
    else:
        fix = "set DATABASE_URL for the stage's database, or correct database: in hosts.yaml"
    return message, fix


def bundle_deployment(script: str, source: str) -> Run:
    """`bundle install` in deployment mode; says what it installed, and names a gem the
    lockfile pins that the source does not have."""
    def run(r: HostRun) -> str:
        try:
            out = remote.sh(r.conn, script, sudo=True, step="bundle", on_line=r.progress)
        except RailsfabError as exc:
            said = gems.unavailable_message(exc.message, source)
            if said:
                exc.message = f"{said}\n{exc.message}"
                exc.fix = ("add that version to the source, or lock a version it has "
                           "(`bundle lock --update GEM` where the source is reachable)")
            raise
        return gems.installed_summary(out.stdout)
    return run


def ensure_dirs(wanted: list[list[str]]) -> Run:
    """[path, owner, group, mode] each, made or fixed without following links; a directory
    that is not the app's, or a link in the way, fails the step naming the path."""
    def run(r: HostRun) -> None:
        out = remote.sh(r.conn, "sudo -n python3 -", step="directories",
                        stdin=onhost.python_call("dirs.py", "main", {"dirs": wanted})).stdout
        problems = json.loads(out)
        if problems:
            raise RailsfabError("; ".join(problems), step="directories",
                                state="nothing served was touched",
                                fix="look at what is there (a link may be someone's doing), "
                                    "move it away, then deploy again")
    return run
