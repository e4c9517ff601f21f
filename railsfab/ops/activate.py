"""Activate: what changes what is being served, run per batch through the publish path.

Config files are validated before they replace the old ones; `current` is switched
atomically; the app server is (re)started or handed over, and counts as ready only once it
answers on its own socket or port; nginx moves to it only then; the other server (after a
switch unicorn <-> puma) keeps running until every host serves (the deploy's finalize phase
retires it), so a failed host anywhere in the roll puts every host back on it.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from railsfab import commands, onhost, remote, verify
from railsfab.appserver import AppServer
from railsfab.facts import Facts
from railsfab.ops import runs
from railsfab.ops.base import Change, Check, Diff, NoChange, Plan, Planned, Script
from railsfab.ops.desired import Desired, Serving, sha

if TYPE_CHECKING:
    from railsfab.executor import HostRun


def _install(dest: str, text: str, *, owner: str, group: str, mode: str,
             validate: str | None = None, name: str | None = None, then: str = "") -> Script:
    """Up to a temp file, validated there, then moved into place: on failure the old file
    stays."""
    fname = name or dest.rsplit("/", 1)[-1]
    check = f" && {validate.format(file=f'$t/{fname}')}" if validate else ""
    return Script(f"t=$(mktemp -d) && trap 'rm -rf $t' EXIT && cat > $t/{fname}{check} && "
                  f"install -o {owner} -g {group} -m {mode} $t/{fname} {dest}{then}",
                  stdin=text.encode())


def server_config(f: Facts, d: Desired, p: Plan) -> Change | NoChange:
    dest, text = d.paths.server_config, d.files["server_config"]
    if f.file_sha(dest) == sha(text):
        return NoChange(dest)
    # read by the app server's next handover or restart, which the plan shows apart
    return Change(f"update {dest}", done=dest, diff=Diff(dest, text), gapless=True,
                  scripts=(_install(dest, text, owner="root", group=d.app.deploy_user,
                                    mode="0640", validate="ruby -c {file} >/dev/null"),))


def unit(f: Facts, d: Desired, p: Plan) -> Change | NoChange:
    dest, text = d.paths.unit, d.files["unit"]
    if f.file_sha(dest) == sha(text):
        return NoChange(dest)
    return Change(f"update {dest}", done=dest, diff=Diff(dest, text), scripts=(_install(
        dest, text, owner="root", group="root", mode="0644", name=d.paths.unit_name,
        validate="systemd-analyze verify {file} >/dev/null",
        then=" && systemctl daemon-reload"),))


def site(f: Facts, d: Desired, p: Plan) -> Change | NoChange:
    paths = d.paths
    if not d.app.nginx:
        return _no_site(f, d)
    text = d.files["site"]
    defaults = [x for x in paths.nginx_default_sites if f.node(x)]
    enabled = f.node(paths.nginx_site_enabled)
    removed = f", remove {' '.join(defaults)}" if defaults else ""
    if (f.file_sha(paths.nginx_site) == sha(text) and not defaults and enabled
            and enabled["link"] == paths.nginx_site):
        return NoChange(f"{paths.nginx_site}, default site absent")
    # Written in place but kept only if `nginx -t` accepts the whole configuration; the
    # running nginx keeps its loaded config either way until the nginx step reloads it.
    script = f"""t=$(mktemp -d) && trap 'rm -rf $t' EXIT && cat > $t/site &&
if [ -f {paths.nginx_site} ]; then cp -p {paths.nginx_site} $t/old; fi &&
install -m 0644 $t/site {paths.nginx_site} &&
ln -sfn {paths.nginx_site} {paths.nginx_site_enabled} &&
rm -f {' '.join(paths.nginx_default_sites)} &&
if ! nginx -t 2>$t/err; then
  if [ -f $t/old ]; then cp -p $t/old {paths.nginx_site}; else rm -f {paths.nginx_site} \
{paths.nginx_site_enabled}; fi
  grep -v 'test failed' $t/err >&2; exit 1
fi"""
    return Change(f"update {paths.nginx_site}{removed}", diff=Diff(paths.nginx_site, text),
                  done=paths.nginx_site + removed.replace("remove", "removed"),
                  scripts=(Script(script, stdin=text.encode()),))


def _no_site(f: Facts, d: Desired) -> Change | NoChange:
    """`nginx: false`: a site left from an nginx-fronted setup would answer :80 with 502s
    once its app server is gone; take it out (nginx itself may serve other sites)."""
    paths = d.paths
    present = [x for x in (paths.nginx_site_enabled, paths.nginx_site) if f.node(x)]
    if not present:
        return NoChange(f"none (nginx: false; {d.server.name} answers on :{d.app.port})")
    return Change(f"remove {' '.join(present)} (nginx: false)",
                  done=f"removed {' '.join(present)} (nginx: false)",
                  scripts=(Script(f"rm -f {' '.join(present)} && (! systemctl is-active -q "
                                  f"nginx || {commands.nginx_reload()})"),))


def switch(f: Facts, d: Desired, p: Plan) -> Change | None:
    if not p.changes("release"):
        return None
    return switch_to(d, d.release)


def switch_to(d: Serving, release: str) -> Change:
    # the running master serves what it loaded until its handover: nothing is lost
    return Change(f"point current to releases/{release}", done=f"current -> releases/{release}",
                  gapless=True, scripts=(Script(commands.switch_current(d.paths, release,
                                                          owner=d.app.deploy_user)),))


def app_server(f: Facts, d: Desired, p: Plan) -> Change | NoChange:
    server, unit_name = d.server, d.paths.unit_name
    state = f.unit(unit_name)
    enable = state["enabled"] != "enabled"
    if state["active"] != "active":
        running = [s for s in d.retired if f.unit(s.paths.unit_name)["active"] == "active"]
        beside = (f" beside {running[0].paths.unit_name} (its own socket; nginx moves over "
                  "once it answers)") if running else ""
        # crash-looping (or given up on): its start job runs what was there before
        failing, stopped = "", ""
        if state["active"] in ("activating", "failed", "deactivating"):
            failing = f" (it is {state['active']}: stop its start job and reset it first)"
            stopped = f" (it was {state['active']}: its start job stopped and reset first)"
        return Change(f"start {unit_name}{beside}{failing}",
                      run=runs.systemctl(server, "start", enable),
                      done=f"started {unit_name}{beside}{stopped}")
    hard = [why for why, step in (("unit", f"{server.name} unit"), ("env file", "env file"))
            if p.changes(step)]
    soft = [why for why, step in (("new release", "release"), ("config", f"{server.name} config"))
            if p.changes(step)]
    if hard:
        # A re-exec'd master keeps its environment and unit settings: only a full restart
        # picks these up (a short gap while the server boots).
        why = ", ".join(hard + soft)
        return Change(f"restart {unit_name} ({why} changed; full restart)",
                      run=runs.systemctl(server, "restart", enable),
                      done=f"restarted ({why} changed; full restart)")
    if soft:
        gems_changed = f.current_meta.get("gems") != d.digests.gems
        mode = server.restart_mode(gems_changed=gems_changed,
                                   config_changed=p.changes(f"{server.name} config"))
        return Change(f"hand over ({', '.join(soft)}; {mode})", gapless=gapless(mode),
                      run=runs.handover(server, mode, enable,
                                        summary=f"zero-downtime handover ({', '.join(soft)})"))
    pid = state["main_pid"]
    if enable:
        return Change(f"enable {unit_name}", done=f"enabled; master pid {pid}", scripts=(
            Script(f"systemctl enable -q {unit_name}"),))
    return NoChange(f"running, master pid {pid}")


def gapless(mode: str) -> bool:
    """A USR2 or phased handover loses no request; puma's hot restart holds them in the
    socket's backlog while the app boots (seconds): its host leaves the target group."""
    return mode != "hot"


def nginx(f: Facts, d: Desired, p: Plan) -> Change | NoChange | None:
    if not d.app.nginx:
        return None
    state = f.unit("nginx")
    enable = "" if state["enabled"] == "enabled" else "systemctl enable -q nginx && "
    # The package's postinst may have started nginx since the facts were read:
    # reload-or-restart is right whether it runs or not.
    reload = runs.script_marked(enable + commands.nginx_reload("reload-or-restart"),
                                mark="nginx", unit="nginx")
    if p.changes("nginx site"):
        return Change("reload (site changed)", done="reloaded (site changed)", run=reload)
    if state["active"] != "active":
        return Change("start", done="started", scripts=(Script(f"{enable}systemctl start nginx"),))
    # The site on disk is the one wanted, but is it the one served? A run that wrote it and
    # failed before this step (or a hand edit) left it unloaded.
    stale = f.nginx_not_loaded()
    if stale is None:
        why = "could not tell when the running nginx read its config"
    elif stale:
        why = f"the running nginx read its config before {', '.join(stale)} changed"
    else:
        return NoChange("running, serves the config on disk (read after its last change)")
    return Change(f"reload ({why})", done=f"reloaded ({why})", run=reload)


def verified(f: Facts | None, d: Serving, p: Plan | None = None, *,
             always: bool = False) -> Check:
    """Verification through nginx (or the app's port): after anything was activated, and on
    a host whose current release never passed it (a deploy that stopped before it)."""
    where = "nginx" if d.app.nginx else f":{d.app.port}"
    unverified = f is not None and f.current is not None and \
        f.current_meta.get("state") not in ("good", None)
    return Check(f"/, {d.app.health_path} and an asset answer 200 through {where}",
                 run=lambda r: verify.serving(r.conn, d), always=always or unverified)


def retire(f: Facts, d: Desired, p: Plan) -> Change | None:
    """After a switch (unicorn <-> puma), once the new server verified: stop and disable the
    old one, remove its unit, config, pid file and socket, and end any process of it left.
    Nothing to do (and no step shown) on hosts that never ran it."""
    old = [s for s in d.retired if f.unit(s.paths.unit_name)["load"] == "loaded"]
    if not old:
        return None
    was_serving = {s.name: f.unit(s.paths.unit_name)["active"] == "active" for s in old}
    names = " ".join(s.paths.unit_name for s in old)
    return Change(f"stop and remove {names}", run=_retire_run(d.server, old, was_serving))


def _retire_run(new: AppServer, old: list[AppServer], was_serving: dict[str, bool]
                ) -> Callable[[HostRun], str]:
    def run(r: HostRun) -> str:
        said = []
        for s in old:
            p = s.paths
            env = {"UNIT": p.unit_name, "UNIT_FILE": p.unit, "CONFIG": p.server_config,
                   "PIDF": p.pid, "SOCKET": p.socket,
                   # the app's user, or the deploy user it ran as before app.app_user
                   "USER_": f"{s.app.run_user},{s.app.deploy_user}",
                   "PATTERN": s.processes}
            out = remote.sh(r.conn, f"sudo -n env {_assign(env)} bash -s",
                            step=f"retire {s.name}", stdin=onhost.load("retire.sh").encode(),
                            on_line=r.progress, timeout=120).stdout.strip()
            stopped = time.monotonic()
            said.append(f"{p.unit_name} stopped, disabled and removed"
                        + _no_gap(r, new, s, was_serving[s.name], stopped)
                        + (f"; orphan processes {out.removeprefix('ended ')}" if out else ""))
        return "; ".join(said)
    return run


def _no_gap(r: HostRun, new: AppServer, old: AppServer, was_serving: bool,
            stopped: float) -> str:
    """Claimed only from what was measured in this run: the new server answered before
    nginx moved to it, the old one served until after that, and nginx logged no failed
    request to either (an upstream error) since the new server started."""
    ready, moved = r.marks.get("ready"), r.marks.get("nginx")
    if not (was_serving and ready and moved and ready <= moved):
        return ""
    failed = _upstream_errors(r, since=ready)
    timing = (f"{new.title} answered {moved - ready:.1f}s before nginx moved to it, "
              f"{old.title} stopped {stopped - moved:.1f}s after")
    if failed:
        return f"; {failed} requests failed in nginx (upstream errors) during the switch: {timing}"
    return (f"; no gap: {timing}, 0 upstream errors in nginx's log (its reload closed idle "
            f"keep-alive connections, which clients send again; the cost: one extra app boot "
            f"and both servers' memory meanwhile)")


def _upstream_errors(r: HostRun, *, since: float) -> int:
    """Requests nginx failed to pass to an app server (its error log) since the monotonic
    time `since`, as the host's clock tells it."""
    epoch = int(time.time() - (time.monotonic() - since)) - 1
    script = (f"s=$(date -d @{epoch} '+%Y/%m/%d %H:%M:%S'); tail -n 5000 /var/log/nginx/error.log "
              "2>/dev/null | awk -v s=\"$s\" 'substr($0, 1, 19) >= s && /upstream/' | wc -l")
    out = remote.sh(r.conn, script, sudo=True, step="retire", warn=True).stdout.strip()
    return int(out) if out.isdigit() else 0


def _assign(env: dict[str, str]) -> str:
    return " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())


def revert_plan(d: Serving, r: HostRun, *, leaving_gems: str | None = None) -> Plan | None:
    """Back on the release the host served before: `current` moved back, the app server
    restarted from it if this run had touched it (zero-downtime while its master lives),
    every process of it read to run that release, and verified through nginx. None on a
    first deploy (nothing to go back to). `leaving_gems`: the gems digest of the release
    being left (the same as the previous one's: a puma phased restart is enough)."""
    prev = r.facts.current
    if prev is None:
        return None
    server = d.server
    steps = []
    if "switch" in r.applied:
        steps.append(Planned("revert", switch_to(d, prev)))
    kept = _switched_from(d, r)
    if kept is not None:
        steps += _switch_back(d, r, kept, prev)
        steps.append(Planned("verify", verified(r.facts, d, always=True)))
        return Plan(steps)
    steps += _site_back(d, r, "nginx site as it was")
    if r.restarted:
        gems_changed = leaving_gems is None or r.facts.current_meta.get("gems") != leaving_gems
        steps.append(Planned("revert", Change(f"restart {server.name} from {prev}", run=runs.revert(
            server, gems_changed=gems_changed,
            config_changed=f"{server.name} config" in r.applied))))
        steps.append(Planned("release", Check(f"{server.name} runs releases/{prev}",
                                              run=runs.runs_release(server, prev), always=True)))
    steps.append(Planned("verify", verified(r.facts, d, always=True)))
    return Plan(steps)


def _switched_from(d: Serving, r: HostRun) -> AppServer | None:
    """The server this run was switching away from (unicorn <-> puma) when it failed, while
    it still runs: the new one was started beside it and it was not retired yet."""
    f = r.facts
    if f.unit(d.paths.unit_name)["active"] == "active" or any(
            s.startswith("retire") for s in r.applied):
        return None
    return next((s for s in getattr(d, "retired", ()) if f.unit(s.paths.unit_name)["active"]
                 == "active"), None)


def _site_back(d: Serving, r: HostRun, what: str) -> list[Planned]:
    """The nginx site this run wrote, put back as the facts read it before (reloaded if this
    run had reloaded nginx onto it): a later reload must not bring back the failed run's."""
    site, old_site = d.paths.nginx_site, r.facts.text(d.paths.nginx_site)
    if "nginx site" not in r.applied or old_site is None:
        return []
    # reloaded onto it only when this run's nginx step completed (a reload that failed left
    # nginx on what it had loaded; it is marked only on success)
    reload = f" && {commands.nginx_reload()}" if "nginx" in r.marks else ""
    return [Planned("revert", Change(
        what, done=what + (", reloaded" if reload else " (nginx had not loaded the new one)"),
        scripts=(Script(f"t=$(mktemp -d) && trap 'rm -rf $t' EXIT && cat > $t/site && "
                        f"install -m 0644 $t/site {site} && nginx -t -q{reload}",
                        stdin=old_site.encode()),)))]


def _switch_back(d: Serving, r: HostRun, kept: AppServer, prev: str) -> list[Planned]:
    """A failed switch is undone, the way the host was: nginx back on the server that kept
    running (the site as the facts read it, reloaded if this run had reloaded nginx onto the
    new one), the new server stopped and removed as if never started, the kept one read to
    run `prev`."""
    steps = _site_back(d, r, f"nginx site back on {kept.name}")
    unit = d.paths.unit_name
    steps.append(Planned("revert", Change(
        f"stop and remove {unit} (the switch to {d.server.name} is undone)",
        run=_retire_run(kept, [d.server], {d.server.name: False}))))
    steps.append(Planned("release", Check(f"{kept.name} runs releases/{prev}",
                                          run=runs.runs_release(kept, prev), always=True)))
    return steps
