"""The layers under and in front of the app: the host's resources, nginx, the site config,
the socket."""

from __future__ import annotations

from railsfab.diagnose.base import Context, Finding, Layer
from railsfab.diagnose.drift import site_drift
from railsfab.diagnose.evidence import (
    denial,
    grant,
    holder,
    mib,
    since_text,
    stop_holder,
    unit_summary,
)
from railsfab.onhost.check_app import first_error

# --- host ------------------------------------------------------------------------------

LOW_SPACE = 256 << 20  # bytes; or 5% of a smaller file system
LOW_INODES = 1000  # or 5% of a smaller file system


def disk_full(d: dict, ctx: Context) -> Finding | None:
    for disk in d.get("host", {}).get("disks", []):
        space = disk["avail"] < min(LOW_SPACE, disk["size"] * 0.05)
        inodes = disk["files"] and disk["favail"] < min(LOW_INODES, disk["files"] * 0.05)
        if not (space or inodes):
            continue
        m = disk["mount"]
        what = (f"{mib(disk['avail'])} free of {mib(disk['size'])}" if space else
                f"{disk['favail']} of {disk['files']} inodes free")
        top = disk.get("biggest") or []
        detail = (f"{m['point']} ({m['fstype']} {m['source']}, holding "
                  f"{', '.join(disk.get('paths', [disk['path']]))}) is full: {what}")
        if top:
            detail += "; largest files: " + ", ".join(
                f"{f['path']} {mib(f['size'])} ({f['owner']})" for f in top)
        fix = (f"free space on {m['point']}: remove or truncate what is not needed, e.g. "
               f"sudo truncate -s 0 {top[0]['path']}" if top and space else
               f"free inodes on {m['point']}: remove the many small files there")
        return detail, fix
    return None


def oom_killed(d: dict, ctx: Context) -> Finding | None:
    oom = d.get("server", {}).get("oom") or {}
    kills = oom.get("cgroup_kills") or 0
    if not (oom.get("lines") or kills or oom.get("result") == "oom-kill"):
        return None
    said = (oom.get("lines") or [f"result {oom.get('result')}"])[-1]
    detail = (f"the OOM killer struck since {ctx.paths.unit_name} started "
              f"({since_text(oom.get('since'))}): {said}"
              + (f"; its cgroup counts {kills} OOM kills" if kills else ""))
    return detail, memory_fix(d, ctx)


def memory_fix(d: dict, ctx: Context) -> str:
    """A limit of the unit's own, or the host's memory: what the server's processes use."""
    srv = d.get("server", {})
    main = srv.get("main_proc") or {}
    procs = [main, *main.get("worker_procs", [])] if main else []
    rss = sum((p.get("rss_kb") or 0) for p in procs) * 1024
    uses = f" uses {mib(rss)} in {len(procs)} processes" if rss else ""
    limit = (srv.get("unit") or {}).get("MemoryMax", "infinity")
    if limit not in ("", "infinity", "[not set]"):
        return (f"{ctx.paths.unit_name} has MemoryMax={limit} (it{uses}): raise it (sudo "
                f"systemctl set-property {ctx.paths.unit_name} MemoryMax=...) or lower "
                "app.workers in hosts.yaml and fab deploy")
    mem = d.get("host", {}).get("memory", {})
    free = (f"; {mib(mem['MemAvailable'] * 1024)} of {mib(mem['MemTotal'] * 1024)} available "
            "now") if mem.get("MemTotal") else ""
    return (f"the host ran out of memory{free}; the app server{uses or ''}: lower "
            f"app.workers ({ctx.workers}) in hosts.yaml and fab deploy, or give the host more "
            "memory")


class Host(Layer):
    name = "host"
    checks = (disk_full, oom_killed)

    def healthy(self, d, ctx):
        h = d.get("host") or {}
        disks = ", ".join(f"{x['mount']['point']} {mib(x['avail'])} free"
                          for x in h.get("disks", []))
        mem = h.get("memory", {})
        avail = f"; {mib(mem['MemAvailable'] * 1024)} memory available" if mem else ""
        return (disks or "no disk data") + avail


class BehindNginx(Layer):
    """The layers that exist only with nginx in front of the app server."""

    def applies(self, ctx):
        return ctx.front.nginx

    def skip_reason(self, ctx):
        return (f"no nginx in this stage: {ctx.paths.app_server} answers on "
                f":{ctx.front.port} itself")


# --- nginx -------------------------------------------------------------------------------

def nginx_not_installed(d: dict, ctx: Context) -> Finding | None:
    if not d["nginx"]["installed"]:
        return "nginx is not installed", "fab deploy"
    return None


def port_holders(d: dict, port: int = 80) -> list[dict]:
    return (d.get("listeners") or {}).get("tcp", {}).get(str(port), [])


def foreign(holders: list[dict], unit: str) -> list[dict]:
    """Holders known to run in another unit than `unit`."""
    return [h for h in holders if h.get("unit") and h["unit"] != unit]


def nginx_not_running(d: dict, ctx: Context) -> Finding | None:
    n = d["nginx"]
    unit = n.get("unit") or {"ActiveState": n["active"]}
    others = foreign(port_holders(d), "nginx.service")
    if n["active"] == "active" and n["listen80"] and not others:
        return None
    root = d["http"]["root"]["code"]
    if others:
        said = f"answers / with {root}" if root != "000" else "does not answer HTTP on it"
        port = f":80 is held by {holder(others[0])}, which {said}"
    elif not n["listen80"]:
        port = "nothing listens on :80 (connection refused)"
    else:
        port = ":80 is held by a process of unknown origin"
    said = first_error([line for line in n.get("journal", []) if " systemd[1]: " not in line])
    detail = (f"nginx is {unit_summary(unit)}; {port}"
              + (f"; nginx said at its last start: {said}" if said else ""))
    fix = "sudo systemctl start nginx"
    if others:
        fix = f"{stop_holder(others[0])} (it holds :80), then {fix}"
    broken = config_errors(d)
    if broken:
        fix = f"{config_fix(d, ctx, broken[0])}; then {fix}"
    return detail, fix


def config_errors(d: dict) -> list[dict]:
    test = d["nginx"].get("conf_test")
    if test is None:  # a probe without the structured test: only its words
        return [] if "failed" not in d["nginx"].get("test", "") else [
            {"message": d["nginx"]["test"]}]
    return [] if test["ok"] else (test["errors"] or [{"message": test.get("output", "")}])


def config_fix(d: dict, ctx: Context, e: dict) -> str:
    """Where to fix what `nginx -t` names: another file that repeats the line (not the
    app's site), or the named file (the app's site: fab deploy renders it again)."""
    ours = ctx.paths.nginx_site
    files = [e.get("file"), *(s["file"] for s in e.get("same", []))]
    others = [f for f in files if f and f != ctx.paths.nginx_site_enabled and f != ours]
    if others and len(files) > 1:
        return (f"remove or fix {others[0]} (it repeats line {e.get('line')} of "
                f"{e.get('file')}: `{e.get('text', '')}`): sudo rm {others[0]} if it is a "
                "link in sites-enabled, and sudo nginx -t")
    if e.get("real") == ours or e.get("file") in (ours, ctx.paths.nginx_site_enabled):
        return (f"line {e.get('line')} of {ours} is not what railsfab wrote: fab deploy "
                "renders it again (or fix it by hand), and sudo nginx -t")
    if e.get("file"):
        return f"fix line {e.get('line')} of {e['file']}, and sudo nginx -t"
    return ""


def config_broken_on_disk(d: dict, ctx: Context) -> Finding | None:
    errors = config_errors(d)
    if not errors:
        return None
    e = errors[0]
    where = f" in {e['file']}:{e['line']} (`{e.get('text', '')}`)" if e.get("file") else ""
    if e.get("real") and e["real"] != e.get("file"):
        where += f", which is {e['real']}"  # a link in sites-enabled: the file it names
    same = "; the same line in " + ", ".join(
        f"{s['file']}:{s['line']}" for s in e.get("same", [])) if e.get("same") else ""
    since = since_text((d["nginx"].get("unit") or {}).get("since"))
    return (f"the config on disk fails nginx -t: {e['message']}{where}{same}; the running "
            f"nginx (pid {d['nginx'].get('main_pid')}, since {since}) still serves the config "
            "it loaded, the next reload or restart will fail",
            config_fix(d, ctx, e) + ", then sudo systemctl reload nginx")


class Nginx(BehindNginx):
    name = "nginx"
    checks = (nginx_not_installed, nginx_not_running, config_broken_on_disk)

    def healthy(self, d, ctx):
        return "active, listening on :80, nginx -t ok"


# --- site config -------------------------------------------------------------------------

def default_site_shadows(d: dict, ctx: Context) -> Finding | None:
    """Only when what answers / is not the app: a default site that is enabled but not
    loaded, or loaded but not chosen, shadows nothing."""
    root, up = d["http"]["root"], d["http"]["up"]
    conn = d["socket"].get("connect") or {}
    app_up = conn.get("result") == "answered" and " 200" in conn.get("status", "")
    shadowed = "Welcome to nginx" in root["body"] or (
        d["default_sites"] and app_up and up["code"] == "404")
    if not shadowed:
        return None
    return ("the default site shadows the app ("
            + (", ".join(d["default_sites"]) or "nginx welcome page on /") + ")",
            f"sudo rm {' '.join(d['default_sites']) or '/etc/nginx/sites-enabled/default'} "
            "&& sudo systemctl reload nginx (fab deploy does this)")


def no_upstream(d: dict, ctx: Context) -> Finding | None:
    if not d["upstream"]:
        return f"{ctx.paths.nginx_site} missing or has no unix upstream", "fab deploy"
    return None


class SiteConfig(BehindNginx):
    name = "site config"
    checks = (default_site_shadows, no_upstream)
    warnings = (site_drift,)

    def healthy(self, d, ctx):
        return f"app site enabled, upstream {d['upstream']}"


# --- socket ------------------------------------------------------------------------------

def socket_mismatch(d: dict, ctx: Context) -> Finding | None:
    if d["upstream"] and d["listen"] and d["upstream"] != d["listen"]:
        return (f"nginx upstream {d['upstream']} != {ctx.paths.app_server} listen {d['listen']}",
                "render both from one paths context: fab deploy")
    return None


def socket_taken(d: dict, ctx: Context) -> Finding | None:
    others = foreign(d["socket"].get("holders", []), ctx.paths.unit_name)
    if not others:
        return None
    return (f"{ctx.paths.socket} is held by {holder(others[0])}, not by "
            f"{ctx.paths.unit_name}",
            f"{stop_holder(others[0])} (it holds the socket), then sudo systemctl restart "
            f"{ctx.paths.unit_name}")


def socket_denied(d: dict, ctx: Context) -> Finding | None:
    # Only a socket that answers root but refuses nginx's user is a permission problem; a
    # socket nobody listens on is the app server's (stale log lines prove nothing alone).
    s = d["socket"]
    if not (s["listening"] and s["nginx_can_connect"] is False):
        return None
    user = d["nginx"].get("user", "www-data")
    said = (s.get("connect") or {}).get("error", "Permission denied")
    access = s.get("access") or {}
    logged = [ln for ln in (d.get("requests") or {}).get("nginx", []) if "13:" in ln]
    detail = (f"nginx ({user}) may not connect to the socket: {said}"
              + (f"; {denial(access)}" if not access.get("ok", True) else "")
              + (f"; nginx logged: {logged[-1][:200]}" if logged else ""))
    if access.get("ok", True):
        return detail, ""
    return detail, grant(access, ctx.modes)


class Socket(BehindNginx):
    name = "socket"
    checks = (socket_mismatch, socket_taken, socket_denied)

    def healthy(self, d, ctx):
        conn = d["socket"].get("connect") or {}
        said = (f", {conn['as']} got {conn.get('status', '?')} in {conn.get('ms')} ms"
                if conn.get("result") == "answered" else "")
        return f"{ctx.paths.socket}" + (" listening" if d["socket"]["listening"] else "") + said
