"""The app's layers: the release `current` points to, the app server, the Rails app and its
assets."""

from __future__ import annotations

import re

from railsfab import verify
from railsfab.diagnose.assets import missing_asset
from railsfab.diagnose.base import Context, Finding, Layer, last
from railsfab.diagnose.boot import boot_evidence, boot_fix
from railsfab.diagnose.drift import server_drift
from railsfab.diagnose.evidence import (
    denial,
    grant,
    holder,
    or_go_back,
    request_error,
    unit_summary,
)

# --- release -----------------------------------------------------------------------------


def release(d: dict) -> dict:
    return d.get("release") or {}


def current_missing(d: dict, ctx: Context) -> Finding | None:
    r = release(d)
    if r and not r.get("link"):
        rels = ", ".join(f"{x['id']} ({x['state']})" for x in r.get("releases", []))
        return (f"no {ctx.paths.current} link" + (f" (releases: {rels})" if rels else ""),
                "fab deploy")
    return None


def current_dangling(d: dict, ctx: Context) -> Finding | None:
    r = release(d)
    if not r.get("link") or r.get("exists"):
        return None
    rels = ", ".join(f"{x['id']} ({x['state']})" for x in r.get("releases", [])) or "none"
    # not fab rollback: its restart needs the running master this leaves none of
    return (f"{ctx.paths.current} -> {r['link']}, which does not exist (releases on the host: "
            f"{rels})", f"fab deploy (uploads a release, points {ctx.paths.current} at it and "
                        "starts the app server)")


# Linked only in releases made since railsfab links it (the app's caches): an older
# release's own folder there is not a fault (the next release links it).
LINKED_SINCE = ("tmp/cache",)


def shared_dir_unusable(d: dict, ctx: Context) -> Finding | None:
    for x in release(d).get("linked", []):
        inside = f"{ctx.paths.current}/{x['name']}"
        if x.get("link") is None and x["name"] in LINKED_SINCE:
            continue
        if x.get("link") != x["shared"]:
            return (f"{inside} is not linked to {x['shared']} (it is "
                    f"{x.get('link') or 'no link'})", "fab deploy links the shared dirs")
        if "node" in x and x["node"] is None:
            gone = {"path": x["shared"], "missing": True, "user": ctx.app_user}
            return (f"{x['shared']} does not exist ({inside} links to it; the app server's "
                    "unit may write only there, so systemd cannot start it without it)",
                    f"{grant(gone, ctx.modes)}, then sudo systemctl restart {ctx.paths.unit_name}")
        if not x["app_user"].get("ok", True):
            return (f"{ctx.app_user} may not write {x['shared']} (linked as {inside}): "
                    f"{denial(x['app_user'])}", grant(x["app_user"], ctx.modes))
    return None


def log_not_writable(d: dict, ctx: Context) -> Finding | None:
    for f in release(d).get("files", []):
        if not f["app_user"].get("ok", True):
            return (f"{ctx.app_user} may not write {f['path']}: {denial(f['app_user'])}",
                    grant(f["app_user"], ctx.modes))
    return None


class Release(Layer):
    name = "release"
    checks = (current_missing, current_dangling, shared_dir_unusable, log_not_writable)

    def healthy(self, d, ctx):
        r = release(d)
        if not r:
            return f"current -> {d.get('current')}"
        state = r.get("ledger", {}).get("state", "no ledger entry")
        return (f"current -> {r['link']} ({state}); shared dirs writable by "
                f"{ctx.app_user}")


# --- app server --------------------------------------------------------------------------

def half_done_handover(d: dict, ctx: Context) -> Finding | None:
    """A unicorn USR2 handover stopped between USR2 and QUIT (the command was killed, its
    SSH session cut, or a USR2 sent by hand): `.oldbin` names a live master beside the one
    the pid file names (or beside its new master, still booting)."""
    srv, p = d["server"], ctx.paths
    old, new = srv.get("oldbin_proc"), srv.get("pid_proc")
    if not old or not old["cmd"].startswith("unicorn master"):
        return None

    def serving(m: dict) -> str:
        rel = (m.get("cwd") or "?").rsplit("/", 1)[-1]
        return f"release {rel}, {m['workers']} of {ctx.workers} workers"

    if new and new["pid"] != old["pid"] and new["cmd"].startswith("unicorn master"):
        both = (f"master {old['pid']} ({p.pid}.oldbin; {serving(old)}) and master "
                f"{new['pid']} (pid file; {serving(new)}) both run")
    elif new and new["pid"] != old["pid"]:
        both = (f"master {old['pid']} ({p.pid}.oldbin; {serving(old)}) runs; the master it "
                f"forked, {new['pid']} (pid file), is still booting")
    else:
        both = f"master {old['pid']} holds {p.pid}.oldbin; the master it forked is not up"
    return (f"an interrupted zero-downtime handover: {both}; unicorn refuses another USR2 "
            "until one of them quits",
            "fab restart-app (or fab deploy) finishes it when the new master serves `current` "
            "with all its workers, else undoes it, then restarts; no request is dropped")


def stale_pid_file(d: dict, ctx: Context) -> Finding | None:
    srv, p = d["server"], ctx.paths
    if srv["pid_file"] and not srv["pid_proc"]:
        return (f"stale pid file: {p.pid} names {srv['pid_file']}, which is not running"
                f" (unit {srv['active']}; nginx answers {d['http']['root']['code']})",
                f"sudo rm {p.pid} && sudo systemctl restart {p.unit_name}")
    return None


STARTING = ("start-pre", "start", "start-post")


def left_behind(d: dict, ctx: Context) -> list[dict]:
    """Processes of the unit that hold its address while systemd runs none of them (a
    master an earlier start left running): what keeps a new start from listening."""
    if ctx.front.nginx:
        held = d["socket"].get("holders", [])
    else:
        held = (d.get("listeners") or {}).get("tcp", {}).get(str(ctx.front.port), [])
    # the unit's current main process (a master still starting: waiting on the database)
    # and its children are not left from anything; nor is what a start under way runs
    # (a forking server's master is no main process until its start is done)
    if (d["server"].get("unit") or {}).get("SubState") in STARTING:
        return []
    main = str(d["server"].get("main_pid") or "")
    return [h for h in held if h.get("unit") == ctx.paths.unit_name
            and (main in ("", "0") or main not in (str(h.get("pid")), str(h.get("ppid"))))]


def starts_in_wrong_rails_env(d: dict, ctx: Context) -> Finding | None:
    """Not running, and what it starts with is another environment than the stage's (a
    hand-edited env file): that is the cause to name, before what the failed boot said."""
    srv, p = d["server"], ctx.paths
    env = srv.get("start_rails_env")
    if (srv["active"] == "active" and srv["main_proc"]) or env in (None, d["rails_env"]):
        return None
    unit = srv.get("unit") or {"ActiveState": srv["active"] or "missing"}
    err = srv.get("error")
    said = f"; first error since it was started ({err['source']}): {err['line']}" if err else ""
    return (f"{p.unit_name} is {unit_summary(unit)}: it starts with RAILS_ENV={env} (from "
            f"{p.env_file}), the stage says {d['rails_env']}{said}",
            f"fab deploy (writes {p.env_file} with RAILS_ENV={d['rails_env']} and restarts "
            f"{p.app_server})")


def server_not_running(d: dict, ctx: Context) -> Finding | None:
    srv, code, p = d["server"], d["http"]["root"]["code"], ctx.paths
    if srv["active"] == "active" and srv["main_proc"]:
        return None
    unit = srv.get("unit") or {"ActiveState": srv["active"] or "missing"}
    err = srv.get("error")
    said = f"; first error since it was started ({err['source']}): {err['line']}" if err else ""
    front = f"nginx answers {code}" if ctx.front.nginx else f":{ctx.front.port} answers {code}"
    stray = left_behind(d, ctx)
    if stray:
        return (f"{p.unit_name} is {unit_summary(unit)}; {front}; {ctx.app_address} is held by "
                f"{holder(stray[0])}, which systemd does not run as {p.unit_name}{said}",
                f"sudo kill {' '.join(str(h['pid']) for h in stray)} (left from an earlier "
                f"start), then sudo systemctl restart {p.unit_name}")
    starting = unit.get("SubState") in STARTING
    if db_failed(d) and ((err and re.search(DB_ERROR, err["line"])) or starting):
        # the database layer shows its side: that is the cause
        return (f"{p.unit_name} is {unit_summary(unit)}; {front}{said}",
                f"fix the database layer's fault, then sudo systemctl restart {p.unit_name}",
                "database")
    return (f"{p.unit_name} is {unit_summary(unit)}; {front}{said}{boot_evidence(d, ctx)}",
            boot_fix(d, ctx))


def workers_hung(d: dict, ctx: Context) -> Finding | None:
    conn = d["socket"].get("connect") or {}
    if conn.get("result") != "no answer":
        return None
    workers = (d["server"]["main_proc"] or {}).get("worker_procs", [])
    states = ", ".join(f"{w['pid']} ({w['state']})" for w in workers) or "none found"
    stopped = [str(w["pid"]) for w in workers if w["state"] in ("T", "t")]
    detail = (f"{ctx.app_address} accepts connections but no worker answered {ctx.health} "
              f"within {conn.get('ms', 0) / 1000:.0f} s; workers (state): {states}")
    if stopped:
        return (detail + " - T: stopped by a signal",
                f"sudo kill -CONT {' '.join(stopped)} (or fab restart-app --hard)")
    return detail, (f"fab restart-app --hard replaces the busy workers; what they were doing: "
                    f"the last requests in {ctx.paths.shared}/log/")


def wrong_rails_env(d: dict, ctx: Context) -> Finding | None:
    main = d["server"]["main_proc"]
    if main["rails_env"] != d["rails_env"]:
        return (f"{ctx.paths.app_server} runs with RAILS_ENV={main['rails_env']}, "
                f"the stage says {d['rails_env']}",
                "fab deploy (the unit and env file pass RAILS_ENV explicitly), then "
                "fab restart-app --hard")
    return None


def wrong_master(d: dict, ctx: Context) -> Finding | None:
    srv = d["server"]
    main, pid_proc = srv["main_proc"], srv["pid_proc"]
    if main["user"] != ctx.app_user or (pid_proc and pid_proc["pid"] != main["pid"]):
        return (f"master {main['pid']} runs as {main['user']}; pid file names {srv['pid_file']}",
                "fab restart-app --hard")
    return None


def too_few_workers(d: dict, ctx: Context) -> Finding | None:
    main = d["server"]["main_proc"]
    if main["workers"] < ctx.workers:
        err = d["server"].get("error")
        return (f"{main['workers']} of {ctx.workers} workers running"
                + (f"; first error since it was started: {err['line']}" if err else ""),
                boot_fix(d, ctx) if err else "fab restart-app")
    return None


def not_listening(d: dict, ctx: Context) -> Finding | None:
    if not ctx.app_listening(d):
        return (f"master {d['server']['main_proc']['pid']} does not listen on "
                f"{ctx.app_address}", "fab restart-app --hard")
    return None


class AppServer(Layer):
    name = "app server"
    checks = (half_done_handover, stale_pid_file, starts_in_wrong_rails_env, server_not_running,
              workers_hung, wrong_rails_env, wrong_master, too_few_workers, not_listening)
    warnings = (server_drift,)

    def healthy(self, d, ctx):
        main = d["server"]["main_proc"]
        return (f"master {main['pid']} ({main['user']}), "
                f"{main['workers']} workers, RAILS_ENV={main['rails_env']}")


# --- Rails app (database errors are the database layer's) --------------------------------

DB_ERROR = (r"Mysql2::Error|PG::|ConnectionNotEstablished|Can't connect to (MySQL|server)|"
            r"StatementInvalid")


def app_log(d: dict) -> list[str]:
    return (d.get("requests") or {}).get("rails", []) + d["logs"]["app"] + d["logs"]["server"]


def db_failed(d: dict) -> bool:
    """The probe's own login with the app's credentials failed."""
    db = d.get("db")
    return bool(db) and not (db["reachable"] and (db.get("login") or {"ok": True})["ok"])


def db_error(d: dict) -> str | None:
    """The last database error the app logged (without the probe's request tag)."""
    line = last(app_log(d), DB_ERROR)
    rid = (d.get("requests") or {}).get("id")
    if line and rid and rid in line:
        line = line.split(rid, 1)[-1].split("] ", 1)[-1]
    return line


def host_blocked(d: dict, ctx: Context) -> Finding | None:
    root, alb = d["http"]["root"], d["http"]["alb_host"]
    blocked = last(app_log(d), r"Blocked host") or (
        "Blocked host" in root["body"] + alb["body"] and "Blocked host")
    if root["code"] == "403" or (alb["code"] == "403" and blocked):
        return (f"host authorization blocks requests (/ -> {root['code']}, Host: ALB name -> "
                f"{alb['code']}): {blocked or 'Blocked host'}",
                'allow the ALB\'s name: config.hosts << ".elb.amazonaws.com" in '
                f"config/environments/{d['rails_env']}.rb, keep {ctx.health} excluded "
                "(config.host_authorization), then fab deploy")
    return None


def up_fails(d: dict, ctx: Context) -> Finding | None:
    up = d["http"]["up"]
    code = up["code"]
    if code in ("301", "302", "307", "308") and up.get("location", "").startswith("https://"):
        return (f"{ctx.health} answers {code} to the ALB's health check (plain HTTP, no "
                "X-Forwarded-Proto), a redirect to https: the app forces SSL (config.force_ssl)"
                " and the target group counts only 200 as healthy", verify.alb_health_fix(ctx))
    if code == "404":
        return (f"{ctx.health} answers 404: the app has no such route",
                verify.no_health_route_fix(ctx.health))
    if code != "200":
        err, _ = request_error(d)
        return f"{ctx.health} answers {code}" + (f": {err}" if err else ""), ""
    return None


def app_error(d: dict, ctx: Context) -> Finding | None:
    if d["http"]["root"]["code"] != "500" or db_error(d):
        return None
    err, where = request_error(d)
    err = err or last(app_log(d), r"Error|Exception") or "see the log"
    if missing_asset(d):  # the assets layer shows its side
        return (f"/ answers 500: {err}", "fix the assets layer's fault, then fab restart-app",
                "assets")
    release_id = (release(d).get("ledger") or {}).get("id", "current")
    # where the backtrace first reaches the app's own code (Rails logs those frames): what
    # raised may be a gem's, called from there
    fix = (f"the app's code at {where} (release {release_id}; the backtrace's first app "
           f"frame) raised it or called what did: fix it and fab deploy{or_go_back(d)}"
           ) if where else ""
    return f"/ answers 500: {err}" + (f" at {where}" if where else ""), fix


def blank_page(d: dict, ctx: Context) -> Finding | None:
    """The page answers, but with nothing a user can see: 204, a 2xx with an empty body, or
    406 because Rails found no template for the action."""
    root = d["http"]["root"]
    code, body = root["code"], root.get("body") or ""
    t = d.get("template")
    if not (code == "204" or (code.startswith("2") and not body.strip())
            or (code == "406" and t)):
        return None
    said = f"/ answers {code} with no page: users see a blank page"
    if not t:
        return said, ""
    said += f"; the app logged no template for {t['controller']}Controller#{t['action']}"
    access = t.get("access") or {"ok": True}
    if not access.get("ok", True):
        return (f"{said}: {denial(access)}",
                f"{grant(access, ctx.modes)} (as railsfab leaves a release)")
    if not t.get("templates"):
        folder = "app/views/" + t["views"].split("/app/views/", 1)[-1]
        return (f"{said}: {t['views']} has no {t['action']}.* template",
                f"add {folder}/{t['action']}.html.erb to the app, then fab deploy")
    return said, ""


class RailsApp(Layer):
    name = "Rails app"
    checks = (host_blocked, up_fails, app_error, blank_page)

    def healthy(self, d, ctx):
        return f"/ {d['http']['root']['code']}, {ctx.health} {d['http']['up']['code']}"
