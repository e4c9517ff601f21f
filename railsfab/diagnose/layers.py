"""The diagnosis layers, one object each, in the order a request crosses them.

Each layer names its checks in the order they are tried (see `base.Layer`): the first fault
found is the layer's verdict, exactly as one if/elif chain would decide. The layers read by
the controller from AWS (S3, load balancer, security groups) are in `cloud`.
"""

from __future__ import annotations

from railsfab import verify
from railsfab.diagnose.base import Context, Finding, Layer, last
from railsfab.diagnose.cloud import S3, LoadBalancer, SecurityGroups

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
    "security groups",
)


class Network(Layer):
    """The probe's data exists, so SSH reached the host (tasks/check.py reports failures)."""

    name = "network"

    def healthy(self, d, ctx):
        return "ssh reachable"


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


def nginx_not_listening(d: dict, ctx: Context) -> Finding | None:
    n = d["nginx"]
    if n["active"] != "active" or not n["listen80"]:
        return (f"nothing listens on :80 (connection refused); nginx is {n['active']}"
                + (f"; nginx -t: {n['test']}" if "failed" in n["test"] else ""),
                "sudo systemctl start nginx (journalctl -u nginx says why it stopped)")
    return None


class Nginx(BehindNginx):
    name = "nginx"
    checks = (nginx_not_installed, nginx_not_listening)

    def healthy(self, d, ctx):
        return "active, listening on :80"


# --- site config -------------------------------------------------------------------------

def default_site_shadows(d: dict, ctx: Context) -> Finding | None:
    if d["default_sites"] or "Welcome to nginx" in d["http"]["root"]["body"]:
        return ("the default site shadows the app ("
                + (", ".join(d["default_sites"]) or "nginx welcome page on /") + ")",
                f"sudo rm {' '.join(d['default_sites']) or '/etc/nginx/sites-enabled/default'} "
                "&& sudo systemctl reload nginx (fab deploy does this)")
    return None


def no_upstream(d: dict, ctx: Context) -> Finding | None:
    if not d["upstream"]:
        return f"{ctx.paths.nginx_site} missing or has no unix upstream", "fab deploy"
    return None


class SiteConfig(BehindNginx):
    name = "site config"
    checks = (default_site_shadows, no_upstream)

    def healthy(self, d, ctx):
        return f"app site enabled, upstream {d['upstream']}"


# --- socket ------------------------------------------------------------------------------

def socket_mismatch(d: dict, ctx: Context) -> Finding | None:
    if d["upstream"] and d["listen"] and d["upstream"] != d["listen"]:
        return (f"nginx upstream {d['upstream']} != {ctx.paths.app_server} listen {d['listen']}",
                "render both from one paths context: fab deploy")
    return None


def socket_denied(d: dict, ctx: Context) -> Finding | None:
    # Only a live socket that root can use but nginx's user cannot is a permission problem;
    # a socket nobody listens on is the app server's (stale log lines prove nothing alone).
    s = d["socket"]
    if s["listening"] and s["nginx_can_connect"] is False:
        denied = last(d["logs"]["nginx"], r"\(13: Permission denied\)")
        sockdir = ctx.paths.socket.rsplit("/", 1)[0]
        return ("nginx (www-data) may not connect to the socket"
                + (f": {denied}" if denied else ""),
                f"the socket dir must be group www-data with g+x: sudo chgrp www-data {sockdir}"
                f" && sudo chmod 2750 {sockdir} (fab deploy does this)")
    return None


class Socket(BehindNginx):
    name = "socket"
    checks = (socket_mismatch, socket_denied)

    def healthy(self, d, ctx):
        return f"{ctx.paths.socket}" + (" listening" if d["socket"]["listening"] else "")


# --- app server --------------------------------------------------------------------------

def stale_pid_file(d: dict, ctx: Context) -> Finding | None:
    srv, p = d["server"], ctx.paths
    if srv["pid_file"] and not srv["pid_proc"]:
        return (f"stale pid file: {p.pid} names {srv['pid_file']}, which is not running"
                f" (unit {srv['active']}; nginx answers {d['http']['root']['code']})",
                f"sudo rm {p.pid} && sudo systemctl restart {p.unit_name}")
    return None


def server_stopped(d: dict, ctx: Context) -> Finding | None:
    srv, code, p = d["server"], d["http"]["root"]["code"], ctx.paths
    if srv["active"] != "active" or not srv["main_proc"]:
        refused = last(d["logs"]["nginx"], "connect") if code == "502" else None
        return (f"{p.unit_name} is {srv['active'] or 'missing'}; nginx answers {code}"
                + (f" ({refused})" if refused else ""),
                f"sudo systemctl start {p.unit_name}; if it fails: tail {p.server_log}")
    return None


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
    if main["user"] != ctx.deploy_user or (pid_proc and pid_proc["pid"] != main["pid"]):
        return (f"master {main['pid']} runs as {main['user']}; pid file names {srv['pid_file']}",
                "fab restart-app --hard")
    return None


def too_few_workers(d: dict, ctx: Context) -> Finding | None:
    main = d["server"]["main_proc"]
    if main["workers"] < ctx.workers:
        return (f"{main['workers']} of {ctx.workers} workers running",
                f"tail {ctx.paths.server_log}; fab restart-app")
    return None


def not_listening(d: dict, ctx: Context) -> Finding | None:
    if not ctx.app_listening(d):
        return (f"master {d['server']['main_proc']['pid']} does not listen on "
                f"{ctx.app_address}", "fab restart-app --hard")
    return None


class AppServer(Layer):
    name = "app server"
    checks = (stale_pid_file, server_stopped, wrong_rails_env, wrong_master, too_few_workers,
              not_listening)

    def healthy(self, d, ctx):
        main = d["server"]["main_proc"]
        return (f"master {main['pid']} ({main['user']}), "
                f"{main['workers']} workers, RAILS_ENV={main['rails_env']}")


# --- Rails app (database errors are the database layer's) --------------------------------

DB_ERROR = r"Mysql2::Error|ConnectionNotEstablished|Can't connect to (MySQL|server)"


def app_log(d: dict) -> list[str]:
    return d["logs"]["app"] + d["logs"]["server"]


def db_error(d: dict) -> str | None:
    """The last database error the app logged."""
    return last(app_log(d), DB_ERROR)


def host_blocked(d: dict, ctx: Context) -> Finding | None:
    root, alb = d["http"]["root"], d["http"]["alb_host"]
    blocked = last(app_log(d), r"Blocked host") or (
        "Blocked host" in root["body"] + alb["body"] and "Blocked host")
    if root["code"] == "403" or (alb["code"] == "403" and blocked):
        return (f"host authorization blocks requests (/ -> {root['code']}, Host: ALB name -> "
                f"{alb['code']}): {blocked or 'Blocked host'}",
                'allow the ALB\'s name: config.hosts << ".elb.amazonaws.com" (the sample '
                "app reads RAILS_ALLOWED_HOSTS), keep /up excluded")
    return None


def up_fails(d: dict, ctx: Context) -> Finding | None:
    up = d["http"]["up"]
    code = up["code"]
    if code in ("301", "302", "307", "308") and up.get("location", "").startswith("https://"):
        return (f"{ctx.health} answers {code}, a redirect to https: the app forces SSL "
                "(config.force_ssl)", verify.force_ssl_fix(ctx))
    if code == "404":
        return (f"{ctx.health} answers 404: the app has no such route",
                verify.no_health_route_fix(ctx.health))
    if code != "200":
        return f"{ctx.health} answers {code}", f"tail {ctx.paths.shared}/log/*.log on the host"
    return None


def app_error(d: dict, ctx: Context) -> Finding | None:
    if d["http"]["root"]["code"] == "500" and not db_error(d):
        err = last(app_log(d), r"Error|Exception") or "see the log"
        return f"/ answers 500: {err}", f"tail {ctx.paths.shared}/log/*.log on the host"
    return None


class RailsApp(Layer):
    name = "Rails app"
    checks = (host_blocked, up_fails, app_error)

    def healthy(self, d, ctx):
        return f"/ {d['http']['root']['code']}, {ctx.health} {d['http']['up']['code']}"


# --- assets ------------------------------------------------------------------------------

def no_assets(d: dict, ctx: Context) -> Finding | None:
    if not d["asset"]:
        return ("no precompiled assets in current/public/assets "
                "(pages load unstyled: asset requests 404)",
                "RAILS_ENV=<env> bin/rails assets:precompile in the release (fab deploy does this)")
    return None


def asset_not_served(d: dict, ctx: Context) -> Finding | None:
    code = d["http"]["asset"]["code"]
    if code != "200":
        return (f"{d['asset']} answers {code}",
                "nginx's /assets location must serve current/public/assets")
    return None


class Assets(Layer):
    name = "assets"
    checks = (no_assets, asset_not_served)

    def applies(self, ctx):
        return ctx.pipeline

    def skip_reason(self, ctx):
        return "the app has no asset pipeline (nothing is precompiled)"

    def healthy(self, d, ctx):
        return f"{d['asset']} 200"


# --- database ----------------------------------------------------------------------------

DB_FIX = ("check the DB host is up and its security group allows the database port from "
          "the app hosts")


def db_unreachable(d: dict, ctx: Context) -> Finding | None:
    if not d["db"]["reachable"]:
        return f"cannot reach the database: {d['db'].get('error')}", DB_FIX
    return None


def db_login_refused(d: dict, ctx: Context) -> Finding | None:
    """The server answered, and said no to the app's own credentials or database."""
    login = d["db"].get("login") or {"ok": True}
    if login.get("ok"):
        return None
    where, error = d["db"].get("where", ""), login.get("error", "")
    if login.get("stage") == "database":
        return (f"logged in, but the app's database is not there or not allowed "
                f"({where}): {error}",
                "create it (`fab rails -- db:create`, or on RDS with the master user) and "
                "grant the app's user access to it; DATABASE_NAME is database.name in hosts.yaml")
    return (f"the database refuses the app's credentials ({where}): {error}",
            "DATABASE_USERNAME is database.user in hosts.yaml, DATABASE_PASSWORD comes from "
            "the secrets file: they must match the database user's; then `fab deploy`")


def db_errors_break_app(d: dict, ctx: Context) -> Finding | None:
    err = db_error(d)
    if d["http"]["root"]["code"] == "500" and err:
        return f"/ answers 500: {err}", DB_FIX
    return None


class Database(Layer):
    name = "database"
    checks = (db_unreachable, db_login_refused, db_errors_break_app)

    def applies(self, ctx):
        return ctx.database

    def skip_reason(self, ctx):
        return "no DATABASE_HOST in the env file"

    def healthy(self, d, ctx):
        login = d["db"].get("login")
        if login and login.get("ok"):
            return (f"logged in as {d['db']['where']} ({login.get('server', '?')}, "
                    f"{login.get('ms', '?')} ms)")
        return "reachable on its port"


ALL: tuple[Layer, ...] = (Network(), Nginx(), SiteConfig(), Socket(), AppServer(), RailsApp(),
                          Assets(), Database(), S3(), LoadBalancer(), SecurityGroups())
