"""The layer behind the app that the probe reads: the database (S3, the load balancer and
the security groups are read by the controller: `cloud`)."""

from __future__ import annotations

import re

from railsfab.diagnose.app import db_error
from railsfab.diagnose.base import Context, Finding, Layer

DB_FIX = ("check the DB host is up and its security group allows the database port from "
          "the app hosts")
# what a connect's error says: the name does not resolve, nothing listens, no answer
UNRESOLVED = re.compile(r"Name or service not known|Temporary failure in name resolution|"
                        r"No address associated|nodename nor servname|Unknown (MySQL )?server host"
                        r"|could not translate host name")
REFUSED = re.compile(r"Connection refused")


def db_unreachable(d: dict, ctx: Context) -> Finding | None:
    db = d["db"]
    if db["reachable"]:
        return None
    error, where = db.get("error") or "", db.get("where", "?")
    address = db_address(where)
    said = f"cannot reach the database ({where}): {error}"
    if ctx.stage_db and address != ctx.stage_db:
        said += (f"; the app's settings ({db.get('source') or 'the env file'}; "
                 f"{ctx.paths.env_file}) name {address}, hosts.yaml's database is "
                 f"{ctx.stage_db}")
    return said, unreachable_fix(db, address, ctx)


def db_address(where: str) -> str:
    """"host:port" of the probe's "user@host:port/name"."""
    return where.split("@", 1)[-1].split("/", 1)[0]


def unreachable_fix(db: dict, address: str, ctx: Context) -> str:
    """What the connect's error calls for: the name the app uses (`address`, host:port),
    the port nothing listens on, or the network path that gives no answer."""
    error = db.get("error") or ""
    host = address.rsplit(":", 1)[0]
    said = db.get("source") or "the env file"
    if UNRESOLVED.search(error):
        if ctx.stage_db and address != ctx.stage_db:
            if "DATABASE_URL" in said or "env file" in said:
                return (f"fab deploy writes DATABASE_URL with hosts.yaml's database "
                        f"({ctx.stage_db}) into {ctx.paths.env_file} again (it names {host}), "
                        f"and restarts {ctx.paths.app_server}")
            return (f"{said} names {host}, which does not resolve: point it at the stage's "
                    f"database {ctx.stage_db} (or leave it to DATABASE_URL), then fab deploy")
        return (f"{host} does not resolve from this host: set database.host in hosts.yaml to "
                "the database's address (or a name this host resolves), then fab deploy")
    if REFUSED.search(error):
        return (f"nothing listens on {address}: start the database server there (or set "
                "database.port in hosts.yaml to the port it listens on)")
    return f"no answer from {address}: {DB_FIX}"


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
    return (f"{m['count']} migration(s) of release {release} have not run on "
            f"{d['db'].get('where', 'the database')}: {', '.join(m['pending'])}"
            + (f"; / answers {d['http']['root']['code']}: {err}" if err else ""),
            f"fab rails{ctx.only} -- db:migrate (runs them from this host's release)")


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


def table_gone(d: dict, ctx: Context) -> Finding | None:
    """The app's query needs a table its database lacks: the migration that creates it, and
    whether schema_migrations lists it as run (then the table was removed outside the
    migrations); no migration creating it is the app's own fault."""
    t = (d.get("missing") or {}).get("table")
    if t is None:
        return None
    where, table, only = d["db"].get("where", "the database"), t["table"], ctx.only
    said = f"/ answers {d['http']['root']['code']}: {t['error']}: {where} has no table {table}"
    if not t["file"]:
        return (f"{said}, and no migration of the release creates it",
                f"the app's code asks for table {table}, which none of its migrations "
                f"(db/migrate) creates: add the migration, fab deploy (it runs migrations)")
    version = t["file"].split("_", 1)[0]
    status = f"fab rails{only} -- db:migrate:status"
    return (f"{said}; db/migrate/{t['file']} creates {table} and is recorded as run in "
            "schema_migrations: the table was removed outside the migrations",
            f"{status} (lists what the database recorded); restore {table} from a backup, or "
            f"delete version {version} from schema_migrations and fab rails{only} -- "
            f"db:migrate:up VERSION={version} (creates it empty)")


def db_errors_break_app(d: dict, ctx: Context) -> Finding | None:
    err = db_error(d)
    if d["http"]["root"]["code"] == "500" and err:
        # the probe's own login works: what the app's query met is all the evidence says
        return f"/ answers 500: {err}", ""
    return None


class Database(Layer):
    name = "database"
    checks = (db_unreachable, db_login_refused, migrations_pending, db_user_cannot_write,
              table_gone, db_errors_break_app)

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
