"""`fab check`'s diagnosis: read a host in one round trip, then name the first broken layer.

Layers, in the order a request crosses them:
  network -> nginx -> site config -> socket -> app server -> Rails app -> assets -> database
  -> S3 -> load balancer
On a stage without nginx (puma alone on a TCP port) nginx, site config and socket are
skipped, and the app server must listen on the port.
`evaluate()` is pure (probe data in, layer verdicts out), so each fault's diagnosis is
unit-tested from a table; the integration tests inject the same faults on real hosts.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

from railsfab import remote
from railsfab.inventory import Inventory
from railsfab.paths import Paths

LAYERS = (
    "network",
    "nginx",
    "site config",
    "socket",
    "app server",
    "Rails app",
    "assets",
    "database",
    "S3",
    "load balancer",
)

PROBE = r"""
import glob, json, os, pwd, re, socket, subprocess
P = json.loads(PARAMS)

def out(*argv, input=None):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10, input=input)
        return r.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""

def tail(path, n=30):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2); size = f.tell(); f.seek(max(0, size - 16384))
            return f.read().decode(errors="replace").splitlines()[-n:]
    except OSError:
        return []

def http(path, host=None, sock=None, as_user=None, base=None):
    argv = ["curl", "-s", "-m", "5", "-o", "/tmp/.railsfab-check-body", "-w", "%{http_code}"]
    if host:
        argv += ["-H", "Host: " + host]
    if sock:
        argv += ["--unix-socket", sock]
    argv.append((base or "http://127.0.0.1:%d" % P["port"]) + path)
    if as_user:
        argv = ["runuser", "-u", as_user, "--"] + argv
    code = out(*argv) or "000"
    try:
        body = open("/tmp/.railsfab-check-body", errors="replace").read(4000)
        os.unlink("/tmp/.railsfab-check-body")
    except OSError:
        body = ""
    return {"code": code, "body": body}

def unit(name):
    return {"active": out("systemctl", "is-active", name),
            "main_pid": out("systemctl", "show", "-p", "MainPID", "--value", name)}

def proc(pid):
    try:
        pid = int(pid)
        st = os.stat("/proc/%d" % pid)
        cmd = open("/proc/%d/cmdline" % pid, "rb").read().replace(b"\0", b" ").decode().strip()
        env = dict(kv.split("=", 1) for kv in
                   open("/proc/%d/environ" % pid, "rb").read().decode(errors="replace").split("\0")
                   if "=" in kv)
        kids = [c for c in out("ps", "--ppid", str(pid), "-o", "cmd=").splitlines()
                if "worker" in c]
        return {"pid": pid, "user": pwd.getpwuid(st.st_uid).pw_name, "cmd": cmd,
                "rails_env": env.get("RAILS_ENV"), "workers": len(kids)}
    except (OSError, ValueError, KeyError):
        return None

env = {}
for line in open(P["env_file"]) if os.path.exists(P["env_file"]) else []:
    k, _, v = line.strip().partition("=")
    if k and not k.startswith("#"):
        env[k] = v.strip("'\"")

db = None
if env.get("DATABASE_HOST"):
    try:
        s = socket.create_connection((env["DATABASE_HOST"], int(env.get("DATABASE_PORT", 3306))), 2)
        s.close(); db = {"reachable": True}
    except OSError as e:
        db = {"reachable": False, "error": str(e)}

pid_text = open(P["pid"]).read().strip() if os.path.exists(P["pid"]) else None
server_cfg = open(P["server_config"]).read() if os.path.exists(P["server_config"]) else ""
m = re.search(r'^listen "([^"]+)"|^bind "unix://([^"?]+)', server_cfg, re.M)
site = open(P["site"]).read() if os.path.exists(P["site"]) else ""
u = re.search(r"server unix:(\S+?)[ ;]", site)
try:
    current = os.readlink(P["current"])
except OSError:
    current = None
assets = sorted(glob.glob(P["current"] + "/public/assets/*.css"))
sock = P["socket"]
st = None
try:
    import stat as S
    st = S.S_ISSOCK(os.stat(sock).st_mode)
except OSError:
    pass
listening = sock in out("ss", "-Hxl")
print(json.dumps({
    "nginx": {"installed": os.path.exists("/usr/sbin/nginx"), **unit("nginx"),
              "listen80": bool(out("ss", "-Hltn", "sport = :80")),
              "test": out("sh", "-c", "nginx -t 2>&1 | tail -n 2")},
    "default_sites": [p for p in P["default_sites"] if os.path.exists(p)],
    "upstream": u.group(1) if u else None,
    "listen": (m.group(1) or m.group(2)) if m else None,
    "front": {"nginx": P["nginx"], "port": P["port"],
              "listening": bool(out("ss", "-Hltn", "sport = :%d" % P["port"]))},
    "socket": {"exists": st is not None, "is_socket": bool(st), "listening": listening,
               "nginx_can_connect":
                   http("/up", sock=sock, as_user="www-data", base="http://127.0.0.1")["code"]
                   != "000" if st else None},
    "server": {**unit(P["unit"]), "pid_file": pid_text,
               "pid_proc": proc(pid_text) if pid_text else None,
               "main_proc": proc(unit(P["unit"])["main_pid"])},
    "current": current, "current_exists": bool(current and os.path.isdir(current)),
    "asset": ("/assets/" + os.path.basename(assets[0])) if assets else None,
    "http": {"root": http("/"), "up": http("/up"), "alb_host": http("/", host=P["alb_host"]),
             "asset": http("/assets/" + os.path.basename(assets[0])) if assets else None},
    "rails_env": P["rails_env"],
    "db": db,
    "logs": {"nginx": tail("/var/log/nginx/error.log", 15), "app": tail(P["app_log"], 40),
             "server": tail(P["server_log"], 15)},
}))
"""


@dataclass
class Verdict:
    layer: str
    status: str  # ok | FAIL | skip
    detail: str
    fix: str = ""


def probe(conn, inv: Inventory, paths: Paths) -> dict:
    app = inv.stage.app
    params = {
        "env_file": paths.env_file,
        "pid": paths.pid,
        "server_config": paths.server_config,
        "site": paths.nginx_site,
        "current": paths.current,
        "socket": paths.socket,
        "unit": paths.unit_name,
        "default_sites": list(paths.nginx_default_sites),
        "rails_env": app.rails_env,
        "alb_host": "railsfab-check.elb.amazonaws.com",
        "app_log": f"{paths.shared}/log/{app.rails_env}.log",
        "server_log": paths.server_log,
        "nginx": app.nginx,
        "port": app.http_port,
    }
    script = f"PARAMS = {json.dumps(json.dumps(params))}\n{PROBE}"
    r = remote.sh(conn, "sudo -n python3 -", step="check", stdin=script.encode(), timeout=60)
    return json.loads(r.stdout)


def _last(lines: list[str], pattern: str) -> str | None:
    for line in reversed(lines):
        if re.search(pattern, line):
            return line.strip()[-200:]
    return None


def evaluate(d: dict, *, workers: int, deploy_user: str, paths: Paths,
             s3: dict | None = None, lb: dict | None = None) -> list[Verdict]:
    """Pure: the probe's data -> one verdict per layer, in order."""
    v: list[Verdict] = [Verdict("network", "ok", "ssh reachable")]
    front = d.get("front") or {"nginx": True, "port": 80, "listening": True}
    if not front["nginx"]:
        where = f"tcp :{front['port']}"
        v += [Verdict(layer, "skip", f"no nginx in this stage: {paths.app_server} answers on "
                                     f":{front['port']} itself")
              for layer in ("nginx", "site config", "socket")]
        return v + _app_layers(d, front["listening"], where, workers=workers,
                               deploy_user=deploy_user, paths=paths, s3=s3, lb=lb)
    n = d["nginx"]
    nginx_log = d["logs"]["nginx"]
    root = d["http"]["root"]

    # nginx
    if not n["installed"]:
        v.append(Verdict("nginx", "FAIL", "nginx is not installed", "fab deploy"))
    elif n["active"] != "active" or not n["listen80"]:
        v.append(
            Verdict(
                "nginx",
                "FAIL",
                f"nothing listens on :80 (connection refused); nginx is {n['active']}"
                + (f"; nginx -t: {n['test']}" if "failed" in n["test"] else ""),
                "sudo systemctl start nginx (journalctl -u nginx says why it stopped)",
            )
        )
    else:
        v.append(Verdict("nginx", "ok", "active, listening on :80"))

    # site config
    welcome = "Welcome to nginx" in root["body"]
    if d["default_sites"] or welcome:
        v.append(
            Verdict(
                "site config",
                "FAIL",
                "the default site shadows the app ("
                + (", ".join(d["default_sites"]) or "nginx welcome page on /") + ")",
                f"sudo rm {' '.join(d['default_sites']) or '/etc/nginx/sites-enabled/default'} "
                "&& sudo systemctl reload nginx (fab deploy does this)",
            )
        )
    elif not d["upstream"]:
        v.append(
            Verdict(
                "site config",
                "FAIL",
                f"{paths.nginx_site} missing or has no unix upstream",
                "fab deploy",
            )
        )
    else:
        v.append(Verdict("site config", "ok", f"app site enabled, upstream {d['upstream']}"))

    # socket
    s = d["socket"]
    denied = _last(nginx_log, r"\(13: Permission denied\)")
    if d["upstream"] and d["listen"] and d["upstream"] != d["listen"]:
        v.append(
            Verdict(
                "socket",
                "FAIL",
                f"nginx upstream {d['upstream']} != {paths.app_server} listen {d['listen']}",
                "render both from one paths context: fab deploy",
            )
        )
    # Only a live socket that root can use but nginx's user cannot is a permission problem;
    # a socket nobody listens on is the app server's (stale log lines prove nothing alone).
    elif s["listening"] and s["nginx_can_connect"] is False:
        v.append(
            Verdict(
                "socket",
                "FAIL",
                "nginx (www-data) may not connect to the socket"
                + (f": {denied}" if denied else ""),
                "the socket dir must be group www-data with g+x: "
                f"sudo chgrp www-data {paths.socket.rsplit('/', 1)[0]} && sudo chmod 2750 "
                f"{paths.socket.rsplit('/', 1)[0]} (fab deploy does this)",
            )
        )
    else:
        v.append(
            Verdict("socket", "ok", f"{paths.socket}" + (" listening" if s["listening"] else ""))
        )

    return v + _app_layers(d, s["listening"], paths.socket, workers=workers,
                           deploy_user=deploy_user, paths=paths, s3=s3, lb=lb)


def _app_layers(d: dict, listening: bool, where: str, *, workers: int, deploy_user: str,
                paths: Paths, s3: dict | None, lb: dict | None) -> list[Verdict]:
    """app server -> Rails app -> assets -> database -> S3 -> load balancer, whatever is
    in front; `listening`: the app server's socket or port (`where`) accepts connections."""
    v: list[Verdict] = []
    root, alb = d["http"]["root"], d["http"]["alb_host"]
    up = d["http"]["up"]
    nginx_log = d["logs"]["nginx"]

    # app server
    srv = d["server"]
    pid_proc, main = srv["pid_proc"], srv["main_proc"]
    if srv["pid_file"] and not pid_proc:
        v.append(
            Verdict(
                "app server",
                "FAIL",
                f"stale pid file: {paths.pid} names {srv['pid_file']}, which is not running"
                f" (unit {srv['active']}; nginx answers {root['code']})",
                f"sudo rm {paths.pid} && sudo systemctl restart {paths.unit_name}",
            )
        )
    elif srv["active"] != "active" or not main:
        v.append(
            Verdict(
                "app server",
                "FAIL",
                f"{paths.unit_name} is {srv['active'] or 'missing'}; nginx answers "
                f"{root['code']}"
                + (
                    f" ({_last(nginx_log, 'connect')})"
                    if root["code"] == "502" and _last(nginx_log, "connect")
                    else ""
                ),
                f"sudo systemctl start {paths.unit_name}; if it fails: tail {paths.server_log}",
            )
        )
    elif main["rails_env"] != d["rails_env"]:
        v.append(
            Verdict(
                "app server",
                "FAIL",
                f"{paths.app_server} runs with RAILS_ENV={main['rails_env']}, "
                f"the stage says {d['rails_env']}",
                "fab deploy (the unit and env file pass RAILS_ENV explicitly), then "
                "fab restart-app --hard",
            )
        )
    elif main["user"] != deploy_user or (pid_proc and pid_proc["pid"] != main["pid"]):
        v.append(
            Verdict(
                "app server",
                "FAIL",
                f"master {main['pid']} runs as {main['user']}; pid file names {srv['pid_file']}",
                "fab restart-app --hard",
            )
        )
    elif main["workers"] < workers:
        v.append(
            Verdict(
                "app server",
                "FAIL",
                f"{main['workers']} of {workers} workers running",
                f"tail {paths.server_log}; fab restart-app",
            )
        )
    elif not listening:
        v.append(
            Verdict(
                "app server",
                "FAIL",
                f"master {main['pid']} does not listen on {where}",
                "fab restart-app --hard",
            )
        )
    else:
        v.append(
            Verdict(
                "app server",
                "ok",
                f"master {main['pid']} ({main['user']}), "
                f"{main['workers']} workers, RAILS_ENV={main['rails_env']}",
            )
        )

    # Rails app (database errors are the database layer's)
    app_log = d["logs"]["app"] + d["logs"]["server"]
    db_error = _last(
        app_log, r"Mysql2::Error|ConnectionNotEstablished|Can't connect to (MySQL|server)"
    )
    blocked = _last(app_log, r"Blocked host") or (
        "Blocked host" in root["body"] + alb["body"] and "Blocked host"
    )
    if root["code"] == "403" or alb["code"] == "403" and blocked:
        v.append(
            Verdict(
                "Rails app",
                "FAIL",
                f"host authorization blocks requests (/ -> {root['code']}, Host: ALB name -> "
                f"{alb['code']}): {blocked or 'Blocked host'}",
                'allow the ALB\'s name: config.hosts << ".elb.amazonaws.com" (the sample '
                "app reads RAILS_ALLOWED_HOSTS), keep /up excluded",
            )
        )
    elif up["code"] != "200":
        v.append(
            Verdict(
                "Rails app",
                "FAIL",
                f"/up answers {up['code']}",
                f"tail {paths.shared}/log/*.log on the host",
            )
        )
    elif root["code"] == "500" and not db_error:
        err = _last(app_log, r"Error|Exception") or "see the log"
        v.append(
            Verdict(
                "Rails app",
                "FAIL",
                f"/ answers 500: {err}",
                f"tail {paths.shared}/log/*.log on the host",
            )
        )
    else:
        v.append(Verdict("Rails app", "ok", f"/ {root['code']}, /up {up['code']}"))

    # assets
    if not d["asset"]:
        v.append(
            Verdict(
                "assets",
                "FAIL",
                "no precompiled assets in current/public/assets "
                "(pages load unstyled: asset requests 404)",
                "RAILS_ENV=<env> bin/rails assets:precompile in the release (fab deploy does this)",
            )
        )
    elif d["http"]["asset"]["code"] != "200":
        v.append(
            Verdict(
                "assets",
                "FAIL",
                f"{d['asset']} answers {d['http']['asset']['code']}",
                "nginx's /assets location must serve current/public/assets",
            )
        )
    else:
        v.append(Verdict("assets", "ok", f"{d['asset']} 200"))

    # database
    db = d["db"]
    if db is None:
        v.append(Verdict("database", "skip", "no DATABASE_HOST in the env file"))
    elif not db["reachable"] or (root["code"] == "500" and db_error):
        v.append(
            Verdict(
                "database",
                "FAIL",
                (
                    f"cannot reach the database: {db.get('error')}"
                    if not db["reachable"]
                    else f"/ answers 500: {db_error}"
                ),
                "check the DB host is up and its security group allows 3306 from the app hosts",
            )
        )
    else:
        v.append(Verdict("database", "ok", "reachable on its port"))

    if s3 is None:
        v.append(Verdict("S3", "skip", "no bucket configured"))
    elif s3.get("error"):
        v.append(Verdict("S3", "FAIL", f"round trip to {s3['bucket']} failed: {s3['error']}",
                         "check the bucket exists (fab aws.provision) and the instance role"))
    else:
        v.append(Verdict("S3", "ok", f"put/get/delete on {s3['bucket']}"))
    if lb is None:
        v.append(Verdict("load balancer", "skip", "no target group configured"))
    elif lb.get("state") != "healthy":
        v.append(Verdict("load balancer", "FAIL",
                         f"target {lb.get('id')} is {lb.get('state')} "
                         f"{lb.get('reason') or ''}".strip(),
                         "fab deploy registers it; an unhealthy target means /up fails "
                         "from the ALB: check the app security group allows 80 from the ALB"))
    else:
        v.append(Verdict("load balancer", "ok", f"target {lb['id']} healthy"))
    return v


def first_broken(verdicts: list[Verdict]) -> Verdict | None:
    return next((v for v in verdicts if v.status == "FAIL"), None)


def as_json(results: dict[str, list[Verdict]]) -> str:
    return json.dumps({h: [asdict(v) for v in vs] for h, vs in results.items()}, indent=2)


def s3_round_trip(inv: Inventory) -> dict:
    """Put, read back and delete a small object in the stage's bucket."""
    from railsfab import aws

    bucket = inv.stage.aws.bucket
    s3 = aws.clients(inv).s3
    key = "railsfab-check/probe.txt"
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=b"railsfab check")
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        s3.delete_object(Bucket=bucket, Key=key)
        if body != b"railsfab check":
            return {"bucket": bucket, "error": "read back different bytes"}
    except Exception as exc:  # noqa: BLE001 - any failure is the evidence
        return {"bucket": bucket, "error": str(exc)[:200]}
    return {"bucket": bucket}
