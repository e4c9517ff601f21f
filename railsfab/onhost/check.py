"""`fab check`'s probe: read one host's layers as root and print them as one JSON document.

It runs on the host, not on the controller: `railsfab.diagnose.probe` sends the text of
dblogin.py, dbquery.py, check_sys.py, check_app.py and this file as one program, then a line
`main(json.loads(<params as a JSON string literal>))`, to `sudo -n python3 -`. So it uses
the standard library only (a bare Debian host has python3 and nothing else), nothing runs
at import, and no two of these files define the same top-level name (they share one
namespace there). The controller's unit tests import the pure helpers.

What it gathers is evidence, not verdicts: the units' states and their logs since their
last start, who listens where, a connect as nginx's user, `nginx -t`, the release and the
shared dirs, disk, memory and OOM kills, and the log lines of its own requests (found by
the X-Request-Id it sends). The slow parts (HTTP, the connect, the database login, nginx
-t, the journal) run at once, so a host whose workers hang costs one deadline, not one
per request.
"""

from __future__ import annotations

import glob
import json
import os
import re
import stat
import tempfile
from concurrent.futures import ThreadPoolExecutor

try:  # on the host, the other files' text comes first in the same program
    from railsfab.onhost.check_app import (
        env_keys,
        first_error,
        lines_of,
        named_paths,
        nginx_test,
        nginx_user,
        open_plain,
        readlink,
        release_state,
        since_start,
        size,
        tail_bytes,
        template_access,
    )
    from railsfab.onhost.check_db import app_s3, database
    from railsfab.onhost.check_sys import (
        biggest,
        children,
        connect,
        disk,
        holders,
        may,
        memory,
        oom,
        out,
        parse_ss,
        proc,
        unit_state,
    )
    from railsfab.onhost.check_why import asset_evidence, gem_evidence, table_evidence
except ImportError:  # pragma: no cover
    pass

# the app server's socket in its config: unicorn's `listen "..."`, puma's `bind "unix://..."`
LISTEN = re.compile(r'^listen "([^"]+)"|^bind "unix://([^"?]+)', re.M)
# the socket in nginx's site: `server unix:/path.sock fail_timeout=0;`
UPSTREAM = re.compile(r"server unix:(\S+?)[ ;]")
DEADLINE = 3.0  # s a worker may take to answer the health path before it counts as hung
NGINX_LOG = "/var/log/nginx/error.log"


def parse_env(lines) -> dict[str, str]:
    """KEY=value lines of an env file (systemd's EnvironmentFile=), quotes stripped."""
    env = {}
    for line in lines:
        k, _, v = line.strip().partition("=")
        if k and not k.startswith("#"):
            env[k] = v.strip("'\"")
    return env


def parse_environ(data: bytes) -> dict[str, str]:
    """A process's environment as /proc/<pid>/environ holds it (NUL-separated KEY=value)."""
    return dict(kv.split("=", 1) for kv in data.decode(errors="replace").split("\0")
                if "=" in kv)


def server_listen(config: str) -> str | None:
    """The address the app server's config listens on (unicorn `listen`, puma `bind unix://`)."""
    m = LISTEN.search(config)
    return (m.group(1) or m.group(2)) if m else None


def site_upstream(site: str) -> str | None:
    """The unix socket nginx's site proxies to."""
    u = UPSTREAM.search(site)
    return u.group(1) if u else None


def read(path: str) -> str | None:
    """A file's text; None when it does not exist."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return None


def read_pid_file(path: str) -> str | None:
    """A pid file's first bytes, never through a link (the app writes the folder it is in:
    a link there to /etc/shadow must not put its first line in the report)."""
    try:
        with open_plain(path) as f:
            return f.read(64).decode(errors="replace")
    except OSError:
        return None


def read_env(path: str) -> dict[str, str]:
    text = read(path)
    return parse_env(text.splitlines()) if text is not None else {}


def http(url: str, host: str | None = None, proto: str | None = None,
         rid: str = "") -> dict[str, str]:
    """GET `url` with curl: the status code ("000": no answer), where a redirect points and
    the body's first 4000 characters. `proto`: the X-Forwarded-Proto a TLS-ending proxy
    would send; `rid`: the X-Request-Id Rails tags its log lines with."""
    fd, body_file = tempfile.mkstemp(prefix="railsfab-check-")  # root-only, fresh
    os.close(fd)
    argv = ["curl", "-s", "-m", "5", "-o", body_file, "-w", "%{http_code} %{redirect_url}"]
    for name, value in (("Host", host), ("X-Forwarded-Proto", proto), ("X-Request-Id", rid)):
        if value:
            argv += ["-H", f"{name}: {value}"]
    code, _, location = (out(*argv, url) or "000").partition(" ")
    try:
        with open(body_file, errors="replace") as f:
            body = f.read(4000)
    except OSError:
        body = ""
    finally:
        os.unlink(body_file)
    return {"code": code or "000", "location": location, "body": body}


def server_proc(pid) -> dict | None:
    """Who runs process `pid`, how, in which RAILS_ENV, with how many workers; None if none."""
    info = proc(pid)
    if not info:
        return None
    try:
        with open(f"/proc/{info['pid']}/environ", "rb") as f:
            env = parse_environ(f.read())
    except OSError:
        env = {}
    kids = [proc(c) for c in children(info["pid"])]
    workers = [k for k in kids if k and "worker" in k["cmd"]]
    return {**info, "rails_env": env.get("RAILS_ENV"), "workers": len(workers),
            "worker_procs": workers, "cwd": readlink(f"/proc/{info['pid']}/cwd")}


PIPELINE = re.compile(r"""^\s*(gem\s+["']|\s{4})(sprockets-rails|propshaft|jsbundling-rails|"""
                      r"""cssbundling-rails|dartsass-rails|tailwindcss-rails)\b""", re.M)


def asset_pipeline(release: str) -> bool:
    """Does the release precompile assets? (as railsfab.source.Source.asset_pipeline)"""
    gems = (read(release + "/Gemfile") or "") + (read(release + "/Gemfile.lock") or "")
    return bool(PIPELINE.search(gems)) or os.path.exists(
        release + "/app/assets/config/manifest.js")


def is_socket(path: str) -> bool | None:
    """None when `path` does not exist."""
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return None


def nginx_state() -> dict:
    """nginx's unit, its journal since it last started, and `nginx -t` of the config on
    disk (which the running nginx may not have loaded yet)."""
    unit, said = unit_state("nginx.service")
    test = nginx_test()
    return {"installed": os.path.exists("/usr/sbin/nginx"), "unit": unit,
            "active": unit.get("ActiveState", ""), "main_pid": unit.get("MainPID", ""),
            "journal": said[-20:],
            "conf_test": test, "test": test["output"], "user": nginx_user()}


def unit_env(name: str, env_file: str) -> dict[str, str]:
    """The environment systemd starts the unit with: its Environment=, then its
    EnvironmentFile= (which wins)."""
    env = dict(kv.split("=", 1) for kv in
               out("systemctl", "show", "-p", "Environment", "--value", name).split()
               if "=" in kv)
    env.update(read_env(env_file))
    return env


# systemd could not start the unit's process at all (this start never reached ExecStart)
SYSTEMD_WHY = re.compile(r" systemd\[1\]: .*(Failed to load environment files|Failed to set up "
                         r"|Failed to determine user credentials|Failed at step \w+ spawning"
                         r"|Failed to locate executable|Failed to execute )")
# systemctl show's record of an ExecStartPre= run: "{ path=... ; argv[]=... ; ignore_errors=no
# ; start_time=[...] ; stop_time=[...] ; pid=1 ; code=exited ; status=3 }"
PRE_RUN = re.compile(r"argv\[\]=(.*?) ; ignore_errors=no .*code=(\w+) ; status=(\d+)")


def failed_pre(value: str) -> str | None:
    """The ExecStartPre= command that failed at this start, as systemd recorded it (for a
    forking server systemd calls its ExecStart a "control process" too: that one is the
    server's own start, whose error is in its log)."""
    m = PRE_RUN.search(value or "")
    if m is None or (m.group(2) == "exited" and m.group(3) == "0"):
        return None
    return f"its ExecStartPre={m.group(1)[:120]} {m.group(2)} with status {m.group(3)}"


def server(P: dict) -> dict:
    """The app server's unit, its pid file, the processes both name, what it logged since
    it was started (its stderr log, its journal; across the automatic restarts that
    followed) and the first error there."""
    name = P["unit"]
    unit, own = unit_state(name)
    pid_text = read_pid_file(P["pid"])
    pid_text = pid_text.strip() if pid_text is not None else None
    # unicorn's `.oldbin`: the master a USR2 handover has not (yet) retired
    oldbin = (read_pid_file(P["pid"] + ".oldbin") or "").strip() or None
    main = server_proc(unit.get("MainPID"))
    if main and main["rails_env"] is None:
        # Ruby 3.3's process title can overwrite what /proc shows of the environment: then
        # the unit's environment is the evidence.
        main["rails_env"] = unit_env(name, P["env_file"]).get("RAILS_ENV")
        main["env_from"] = "unit"
    lines, mtime = tail_bytes(P["server_log"])
    # since the start its automatic restarts followed: the first failure is the telling one
    log = since_start(lines, mtime, unit.get("series_since"))[-60:]
    # systemd's own lines say that it failed, not why (the unit's state says it too), but
    # for a start that never ran the server (no env file, no user, no executable): then
    # that is the cause, and the app's logs hold only earlier starts' lines
    said = [line for line in own if " systemd[1]: " not in line]
    why = next((line for line in own if SYSTEMD_WHY.search(line)), None)
    pre = failed_pre(unit.get("ExecStartPre", ""))
    if why is None and pre and unit.get("ActiveState") != "active":
        why = f"{name}: {pre}"
    error, source = first_error(log), P["server_log"]
    if why is not None:
        error, source = why.split(": ", 1)[-1], f"systemd (journalctl -u {name})"
    elif error is None:
        error, source = first_error(said), f"journalctl -u {name}"
    return {"active": unit.get("ActiveState", ""), "main_pid": unit.get("MainPID", ""),
            "unit": unit, "pid_file": pid_text,
            "pid_proc": server_proc(pid_text) if pid_text else None, "main_proc": main,
            "oldbin_file": oldbin, "oldbin_proc": server_proc(oldbin) if oldbin else None,
            "log": log[-20:], "journal": own[-20:],
            "error": {"line": error, "source": source,
                      "paths": named_paths(error, P["app_user"]),
                      "gem": gem_evidence(error)} if error else None,
            "oom": oom(unit, name), "env_keys": env_keys(P["env_file"]),
            # what it starts with (its env file wins over the unit's Environment=)
            "start_rails_env": unit_env(name, P["env_file"]).get("RAILS_ENV")}


def listening(P: dict) -> dict:
    """Who listens on :80, :443, the app's port and the app's socket (PID, command, unit)."""
    found = parse_ss(out("ss", "-Hlnpxt"))
    ports = {str(p) for p in (80, 443, P["port"])}
    return {"tcp": {p: holders(pids) for p, pids in found["tcp"].items() if p in ports},
            "unix": {path: holders(pids) for path, pids in found["unix"].items()
                     if path in (P["socket"],)}}


def host_state(P: dict) -> dict:
    """Free space and inodes where the app, its logs, nginx's logs and /tmp live; memory."""
    disks: dict[str, dict] = {}
    for path in (P["deploy_to"], f"{P['shared']}/log", "/var/log/nginx", "/tmp"):
        d = disk(path)
        if d:
            d = disks.setdefault(d["mount"]["point"], {**d, "paths": []})
            d["paths"].append(path)
    for d in disks.values():
        d["biggest"] = biggest(d["paths"])
    return {"disks": list(disks.values()), "memory": memory()}


def requests(P: dict, pool: ThreadPoolExecutor, rid: str) -> dict:
    """The probe's own requests, at once: through the front (nginx, or the app server's
    port), and straight to the app server's socket as nginx's user."""
    local = f"http://127.0.0.1:{int(P['port'])}"
    health, proto = P.get("health", "/up"), P.get("proto") or None
    asset = sorted(glob.glob(P["current"] + "/public/assets/*.css"))
    asset = "/assets/" + os.path.basename(asset[0]) if asset else None
    address = f"unix:{P['socket']}" if P["nginx"] else f"tcp:127.0.0.1:{int(P['port'])}"
    as_user = nginx_user() if P["nginx"] else None
    jobs = {
        "root": pool.submit(http, local + "/", proto=proto, rid=rid + "-root"),
        # as the ALB's health check asks it: plain HTTP, no X-Forwarded-Proto
        "up": pool.submit(http, local + health, rid=rid + "-up"),
        "alb_host": pool.submit(http, local + "/", host=P["alb_host"], proto=proto,
                                rid=rid + "-alb"),
        "asset": pool.submit(http, local + asset, proto=proto) if asset else None,
        # as nginx passes it (in HTTPS stages nginx says https for every request)
        "connect": pool.submit(connect, address, health, as_user, DEADLINE, rid + "-sock",
                               proto=proto if P["nginx"] else None),
    }
    done = {k: f.result() if f else None for k, f in jobs.items()}
    return {"asset": asset, "connect": done.pop("connect"), "http": done}


def main(P: dict) -> None:
    """Print the host's state as the JSON document `railsfab.diagnose` reads."""
    rid = "railsfab-check-" + os.urandom(6).hex()
    # Rails logs to production.log, or (RAILS_LOG_TO_STDOUT, Rails >= 7.1) to the server's
    # stdout log
    logs = [P["app_log"], P.get("server_stdout", P["app_log"])]
    before = {"nginx": size(NGINX_LOG), **{log: size(log) for log in logs}}
    env = read_env(P["env_file"])
    with ThreadPoolExecutor(max_workers=12) as pool:
        slow = {"nginx": pool.submit(nginx_state), "server": pool.submit(server, P),
                "listeners": pool.submit(listening, P), "host": pool.submit(host_state, P),
                "release": pool.submit(release_state, P),
                "db": pool.submit(database, P, env), "s3": pool.submit(app_s3, P, env)}
        asked = requests(P, pool, rid)
        got = {k: f.result() for k, f in slow.items()}
    n, srv, sock, listeners = got["nginx"], got["server"], P["socket"], got["listeners"]
    n["listen80"] = bool(listeners["tcp"].get("80"))
    conn = asked["connect"]
    current = readlink(P["current"])
    rails_lines = [line for log in dict.fromkeys(logs) for line in lines_of(log, before[log], rid)]
    release = os.path.realpath(P["current"])
    table = table_evidence(release, rails_lines, got["db"])
    if got["db"]:
        got["db"].pop("tables", None)
    print(json.dumps({
        "nginx": n,
        "listeners": listeners,
        "default_sites": [p for p in P["default_sites"] if os.path.exists(p)],
        "upstream": site_upstream(read(P["site"]) or ""),
        "listen": server_listen(read(P["server_config"]) or ""),
        "front": {"nginx": P["nginx"], "port": P["port"],
                  "listening": bool(listeners["tcp"].get(str(P["port"])))},
        "socket": {"exists": is_socket(sock) is not None, "is_socket": bool(is_socket(sock)),
                   "listening": sock in listeners["unix"],
                   "holders": listeners["unix"].get(sock, []),
                   "nginx_can_connect": conn["result"] != "denied" if P["nginx"] else None,
                   "connect": conn, "access": may(sock, n["user"], "w")},
        "server": srv,
        "release": got["release"],
        "host": got["host"],
        "current": current, "current_exists": bool(current and os.path.isdir(P["current"])),
        "asset": asked["asset"],
        "pipeline": asset_pipeline(P["current"]),
        "http": asked["http"],
        "rails_env": P["rails_env"],
        "db": got["db"],
        "s3": got["s3"],
        "requests": {"id": rid, "nginx": lines_of(NGINX_LOG, before["nginx"], "127.0.0.1"),
                     "rails": rails_lines},
        "template": template_access(P, rails_lines),
        "missing": {"asset": asset_evidence(release, rails_lines), "table": table},
        # the files railsfab renders, as they are on disk (fab check compares them)
        "texts": {p: read(p) for p in P.get("rendered", [])},
        "logs": {"nginx": tail_bytes(NGINX_LOG, 4096)[0][-15:],
                 "app": tail_bytes(P["app_log"])[0][-40:], "server": srv["log"][-15:]},
    }))
