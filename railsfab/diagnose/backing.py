"""The layers behind the app: the database, S3 and the load balancer (S3 and the load
balancer are read by the controller, and come in the context)."""

from __future__ import annotations

from railsfab.diagnose.app import db_error
from railsfab.diagnose.base import Context, Finding, Layer

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


def migrations_pending(d: dict, ctx: Context) -> Finding | None:
    """The release's migrations that schema_migrations does not list: its code expects a
    schema the database does not have yet."""
    m = d["db"].get("migrations") or {}
    if not m.get("count"):
        return None
    release = ((d.get("release") or {}).get("ledger") or {}).get("id", "current")
    err = db_error(d)
    only = f" --only {ctx.host}" if ctx.host else ""
    return (f"{m['count']} migration(s) of release {release} have not run on "
            f"{d['db'].get('where', 'the database')}: {', '.join(m['pending'])}"
            + (f"; / answers {d['http']['root']['code']}: {err}" if err else ""),
            f"fab rails{only} -- db:migrate (runs them from this host's release)")


def db_errors_break_app(d: dict, ctx: Context) -> Finding | None:
    err = db_error(d)
    if d["http"]["root"]["code"] == "500" and err:
        return f"/ answers 500: {err}", DB_FIX
    return None


class Database(Layer):
    name = "database"
    checks = (db_unreachable, db_login_refused, migrations_pending, db_errors_break_app)

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


# --- S3 and the load balancer: read by the controller (ctx), not by the probe -------------

def s3_round_trip_failed(d: dict, ctx: Context) -> Finding | None:
    s3 = ctx.s3
    if s3.get("error"):
        return (f"round trip to {s3['bucket']} failed: {s3['error']}",
                "check the bucket exists (fab aws.provision) and the instance role")
    return None


class S3(Layer):
    name = "S3"
    checks = (s3_round_trip_failed,)

    def applies(self, ctx):
        return ctx.s3 is not None

    def skip_reason(self, ctx):
        return "no bucket configured"

    def healthy(self, d, ctx):
        return f"put/get/delete on {ctx.s3['bucket']}"


# What AWS's reason codes call for (TargetHealth.Reason); the description comes with it.
REASON_FIX = {
    "Target.NotRegistered": "fab deploy registers it once this host passes the local health gate",
    "Target.ResponseCodeMismatch": "the ALB's health check must ask {health} (fab "
                                   "aws.provision sets it); the layers above show what "
                                   "this host answers",
    "Target.Timeout": "the ALB gets no answer in time: the app hosts' security group must "
                      "allow port 80 from the ALB's (fab aws.provision sets it)",
    "Target.FailedHealthChecks": "the ALB cannot connect: the app hosts' security group must "
                                 "allow port 80 from the ALB's (fab aws.provision sets it)",
    "Target.InvalidState": "the instance is not running: start it, then fab deploy",
}


def target_unhealthy(d: dict, ctx: Context) -> Finding | None:
    lb = ctx.lb
    if lb.get("state") == "healthy":
        return None
    reason, said = lb.get("reason") or "", lb.get("description") or ""
    detail = f"target {lb.get('id')} is {lb.get('state')}" + (
        f": {reason}" if reason else "") + (f" ({said})" if said else "")
    return detail, REASON_FIX.get(reason, "").format(health=ctx.health)


class LoadBalancer(Layer):
    name = "load balancer"
    checks = (target_unhealthy,)

    def applies(self, ctx):
        return ctx.lb is not None

    def skip_reason(self, ctx):
        return "no target group configured"

    def healthy(self, d, ctx):
        return f"target {ctx.lb['id']} healthy"
