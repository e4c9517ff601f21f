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


def db_user_cannot_write(d: dict, ctx: Context) -> Finding | None:
    """The app's user logged in but may not read and write the app's tables (a read-only
    user: every form that saves answers 500)."""
    missing = (d["db"].get("privileges") or {}).get("missing")
    if not missing:
        return None
    where = d["db"].get("where", "")
    user = where.split("@", 1)[0]
    db = where.rsplit("/", 1)[-1]
    if d["db"].get("adapter") == "postgresql":
        fix = (f"as the database's owner: GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN "
               f"SCHEMA public TO {user}; (and ALTER DEFAULT PRIVILEGES for tables to come), or "
               "point database.user in hosts.yaml at the user that owns them")
    else:
        fix = (f"as an admin: GRANT SELECT, INSERT, UPDATE, DELETE ON `{db}`.* TO '{user}'@'%'; "
               "or point database.user in hosts.yaml at a user that has them")
    return (f"the app's database user {user} may not write the app's data ({where}): lacks "
            + "; ".join(missing), fix)


def db_errors_break_app(d: dict, ctx: Context) -> Finding | None:
    err = db_error(d)
    if d["http"]["root"]["code"] == "500" and err:
        return f"/ answers 500: {err}", DB_FIX
    return None


class Database(Layer):
    name = "database"
    checks = (db_unreachable, db_login_refused, migrations_pending, db_user_cannot_write,
              db_errors_break_app)

    def applies(self, ctx):
        return ctx.database

    def skip_reason(self, ctx):
        return "no DATABASE_URL or DATABASE_HOST in the env file"

    def healthy(self, d, ctx):
        login, db = d["db"].get("login"), d["db"]
        source = f", as {db['source']} says" if db.get("source") else ""
        if db.get("config_error"):
            source = (f", from the env file (the release's own settings could not be read: "
                      f"{db['config_error']})")
        if login and login.get("ok"):
            return (f"logged in as {db['where']} ({login.get('server', '?')}, "
                    f"{login.get('ms', '?')} ms){source}")
        if login and login.get("stage") == "insecure":
            return f"reachable on its port; the login was not tried: {login.get('error', '')}"
        return "reachable on its port"
