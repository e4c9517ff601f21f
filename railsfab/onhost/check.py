"""`fab check`'s probe: read one host's layers as root and print them as one JSON document.

It runs on the host, not on the controller: `railsfab.diagnose.probe` sends this file's text
followed by one line `main(json.loads(<params as a JSON string literal>))` to
`sudo -n python3 -`. So it uses the standard library only (a bare Debian host has python3 and
nothing else), and nothing runs at import: the controller's unit tests import its pure
helpers (the env-file parser, the regexes that read nginx's upstream and the app server's
listen line).
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import re
import stat
import subprocess
import tempfile

try:  # on the host, onhost/dblogin.py's text comes first in the same program
    from railsfab.onhost.dblogin import login
except ImportError:  # pragma: no cover
    pass

# curl writes a response's body here; http() reads and removes it
# the app server's socket in its config: unicorn's `listen "..."`, puma's `bind "unix://..."`
LISTEN = re.compile(r'^listen "([^"]+)"|^bind "unix://([^"?]+)', re.M)
# the socket in nginx's site: `server unix:/path.sock fail_timeout=0;`
UPSTREAM = re.compile(r"server unix:(\S+?)[ ;]")


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


def out(*argv: str) -> str:
    """A command's stdout, stripped; "" when it cannot run or takes over 10 s."""
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return r.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def read(path: str) -> str | None:
    """A file's text; None when it does not exist."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return f.read()


def read_env(path: str) -> dict[str, str]:
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return parse_env(f)


def tail(path: str, n: int = 30) -> list[str]:
    """The last `n` lines of a log (of its last 16 KiB); [] when it cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 16384))
            return f.read().decode(errors="replace").splitlines()[-n:]
    except OSError:
        return []


def http(url: str, host: str | None = None, sock: str | None = None,
         as_user: str | None = None, proto: str | None = None) -> dict[str, str]:
    """GET `url` with curl: the status code ("000": no answer), where a redirect points and
    the body's first 4000 characters. `proto`: the X-Forwarded-Proto a TLS-ending proxy
    would send."""
    fd, body_file = tempfile.mkstemp(prefix="railsfab-check-")  # root-only, fresh
    os.close(fd)
    argv = ["curl", "-s", "-m", "5", "-o", "/dev/null" if as_user else body_file,
            "-w", "%{http_code} %{redirect_url}"]
    if host:
        argv += ["-H", "Host: " + host]
    if proto:
        argv += ["-H", "X-Forwarded-Proto: " + proto]
    if sock:
        argv += ["--unix-socket", sock]
    argv.append(url)
    if as_user:
        argv = ["runuser", "-u", as_user, "--", *argv]
    code, _, location = (out(*argv) or "000").partition(" ")
    try:
        with open(body_file, errors="replace") as f:
            body = f.read(4000)
    except OSError:
        body = ""
    finally:
        os.unlink(body_file)
    return {"code": code or "000", "location": location, "body": body}


def unit(name: str) -> dict[str, str]:
    return {"active": out("systemctl", "is-active", name),
            "main_pid": out("systemctl", "show", "-p", "MainPID", "--value", name)}


def proc(pid) -> dict | None:
    """Who runs process `pid`, how, in which RAILS_ENV, with how many workers; None if none."""
    try:
        pid = int(pid)
        st = os.stat(f"/proc/{pid}")
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode().strip()
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = parse_environ(f.read())
        kids = [c for c in out("ps", "--ppid", str(pid), "-o", "cmd=").splitlines()
                if "worker" in c]
        return {"pid": pid, "user": pwd.getpwuid(st.st_uid).pw_name, "cmd": cmd,
                "rails_env": env.get("RAILS_ENV"), "workers": len(kids)}
    except (OSError, ValueError, KeyError):
        return None


PIPELINE = re.compile(r"""^\s*(gem\s+["']|\s{4})(sprockets-rails|propshaft|jsbundling-rails|"""
                      r"""cssbundling-rails|dartsass-rails|tailwindcss-rails)\b""", re.M)


def asset_pipeline(release: str) -> bool:
    """Does the release precompile assets? (as railsfab.source.Source.asset_pipeline)"""
    gems = (read(release + "/Gemfile") or "") + (read(release + "/Gemfile.lock") or "")
    return bool(PIPELINE.search(gems)) or os.path.exists(
        release + "/app/assets/config/manifest.js")


DEFAULT_PORTS = {"mysql2": 3306, "trilogy": 3306, "postgresql": 5432}


def database(env: dict[str, str], adapter: str) -> dict | None:
    """A login with the app's own credentials from the env file (the login's stage and the
    server's words when it fails); None when the env file names no DATABASE_HOST."""
    host = env.get("DATABASE_HOST")
    if not host:
        return None
    port = int(env.get("DATABASE_PORT") or DEFAULT_PORTS.get(adapter, 3306))
    result = login(adapter, host, port, env.get("DATABASE_USERNAME", ""),
                   env.get("DATABASE_PASSWORD", ""), env.get("DATABASE_NAME", ""))
    reachable = result.get("ok") or result.get("stage") != "connect"
    return {"reachable": bool(reachable), "error": result.get("error"), "login": result,
            "where": f"{env.get('DATABASE_USERNAME', '')}@{host}:{port}/"
                     f"{env.get('DATABASE_NAME', '')}"}


def readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def is_socket(path: str) -> bool | None:
    """None when `path` does not exist."""
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return None


def nginx() -> dict:
    return {"installed": os.path.exists("/usr/sbin/nginx"), **unit("nginx"),
            "listen80": bool(out("ss", "-Hltn", "sport = :80")),
            "test": out("sh", "-c", "nginx -t 2>&1 | tail -n 2")}


def socket_state(sock: str, health: str) -> dict:
    """The app server's unix socket, and whether nginx's user (www-data) may use it."""
    st = is_socket(sock)
    listening = sock in out("ss", "-Hxl")
    return {"exists": st is not None, "is_socket": bool(st), "listening": listening,
            "nginx_can_connect":
                http("http://127.0.0.1" + health, sock=sock, as_user="www-data")["code"] != "000"
                if st else None}


def unit_env(name: str, env_file: str) -> dict[str, str]:
    """The environment systemd starts the unit with: its Environment=, then its
    EnvironmentFile= (which wins)."""
    env = dict(kv.split("=", 1) for kv in
               out("systemctl", "show", "-p", "Environment", "--value", name).split()
               if "=" in kv)
    env.update(read_env(env_file))
    return env


def server(name: str, pid_text: str | None, env_file: str) -> dict:
    """The app server's unit, its pid file and the processes both name."""
    main = proc(unit(name)["main_pid"])
    if main and main["rails_env"] is None:
        # Ruby 3.3's process title can overwrite what /proc shows of the environment: then
        # the unit's environment is the evidence.
        main["rails_env"] = unit_env(name, env_file).get("RAILS_ENV")
        main["env_from"] = "unit"
    return {**unit(name), "pid_file": pid_text,
            "pid_proc": proc(pid_text) if pid_text else None, "main_proc": main}


def main(P: dict) -> None:
    """Print the host's state as the JSON document `railsfab.diagnose.layers` reads."""
    db = database(read_env(P["env_file"]), P.get("adapter", "mysql2"))
    pid_text = read(P["pid"])
    pid_text = pid_text.strip() if pid_text is not None else None
    current = readlink(P["current"])
    assets = sorted(glob.glob(P["current"] + "/public/assets/*.css"))
    asset = "/assets/" + os.path.basename(assets[0]) if assets else None
    local = f"http://127.0.0.1:{int(P['port'])}"
    health, proto = P.get("health", "/up"), P.get("proto") or None
    print(json.dumps({
        "nginx": nginx(),
        "default_sites": [p for p in P["default_sites"] if os.path.exists(p)],
        "upstream": site_upstream(read(P["site"]) or ""),
        "listen": server_listen(read(P["server_config"]) or ""),
        "front": {"nginx": P["nginx"], "port": P["port"],
                  "listening": bool(out("ss", "-Hltn", f"sport = :{int(P['port'])}"))},
        "socket": socket_state(P["socket"], health),
        "server": server(P["unit"], pid_text, P["env_file"]),
        "current": current, "current_exists": bool(current and os.path.isdir(current)),
        "asset": asset,
        "pipeline": asset_pipeline(P["current"]),
        "http": {"root": http(local + "/", proto=proto),
                 "up": http(local + health, proto=proto),
                 "alb_host": http(local + "/", host=P["alb_host"], proto=proto),
                 "asset": http(local + asset, proto=proto) if asset else None},
        "rails_env": P["rails_env"],
        "db": db,
        "logs": {"nginx": tail("/var/log/nginx/error.log", 15), "app": tail(P["app_log"], 40),
                 "server": tail(P["server_log"], 15)},
    }))
