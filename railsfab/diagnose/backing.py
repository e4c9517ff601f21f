"""The layer behind the app that the probe reads: the database (S3, the load balancer and
the security groups are read by the controller: `cloud`)."""

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
    if login.get("ok") or login.get("stage") == "insecure":  # not tried: healthy() says so
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
        if login and login.get("stage") == "insecure":
            return f"reachable on its port; the login was not tried: {login.get('error', '')}"
        return "reachable on its port"
