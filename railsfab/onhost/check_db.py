"""`fab check`'s database probe: the settings the release will use, as Rails makes them (its
config/database.yml, ERB and all, merged with DATABASE_URL: onhost/dbconfig.rb, run by the
app's Ruby with the app's own activerecord, as the app's user, without booting the app), then
a login with them (dblogin: railsfab's own, which never sends a password to a server that
asks for it in cleartext, as the driver of an older libpq would), and in that session which
migrations have run and whether the user may write the app's tables.

Part of the probe program (railsfab.diagnose.probe.PROGRAM): standard library only."""

from __future__ import annotations

import json
import os
import subprocess

try:  # on the host, the other files' text comes first in the same program
    from railsfab.onhost.dblogin import login
    from railsfab.onhost.dbquery import MIGRATIONS, PRIVILEGES, TABLES, questions
except ImportError:  # pragma: no cover
    pass

DEFAULT_PORTS = {"mysql2": 3306, "trilogy": 3306, "postgresql": 5432}
RUBY_TIMEOUT = 5.0  # Ruby, Bundler and activerecord load in about 0.4 s


def app_ruby(P: dict, env: dict[str, str], code: str, timeout: float = RUBY_TIMEOUT) -> dict:
    """What `code` prints (one JSON line), run by the app's Ruby with its bundle and its env
    file, as the app's user, in the release; {"error": ...} when it could not say."""
    run_env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME": "/nonexistent",
               "LANG": "C.UTF-8", **env, **P.get("bundle_env", {})}
    try:
        p = subprocess.run(["runuser", "-u", P["app_user"], "--", "ruby", "-e", code],
                           cwd=P["current"], env=run_env, capture_output=True, text=True,
                           timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"error": f"the app's Ruby did not answer ({type(e).__name__})"}
    if p.returncode != 0:
        lines = [x for x in p.stderr.strip().splitlines() if x.strip()]
        return {"error": (lines[0] if lines else f"exited {p.returncode}")[:300]}
    try:
        got = json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": "the app's Ruby said nothing readable"}
    return got if isinstance(got, dict) else {"error": "the app's Ruby said nothing readable"}


def effective(P: dict, env: dict[str, str]) -> dict:
    """{adapter, host, port, database, username, password, source} as the release's Rails
    would use them, or {"error": ...} when the app's Ruby could not say."""
    got = app_ruby(P, env, P["dbconfig_rb"])
    if "error" in got:
        return {"error": str(got["error"])}
    return {k: str(got.get(k) or "") for k in ("adapter", "host", "port", "database",
                                                 "username", "password", "source")}


def app_s3(P: dict, env: dict[str, str]) -> dict | None:
    """A put, get and delete with the app's own S3 settings (onhost/s3check.rb); None when
    the stage has no bucket."""
    if not P.get("s3check_rb"):
        return None
    return app_ruby(P, env, P["s3check_rb"], timeout=15.0)


def database(P: dict, env: dict[str, str]) -> dict | None:
    """A login with the settings the release uses (the login's stage and the server's words
    when it fails), and in its session which of its migrations have run and which of the
    app's write privileges the user lacks; None when the app has no database settings."""
    if not env.get("DATABASE_URL") and not env.get("DATABASE_HOST"):
        return None
    cfg = effective(P, env) if P.get("dbconfig_rb") else {"error": "not asked"}
    said = cfg.pop("error", None)
    if said:  # fall back to the env file's names, and say why
        cfg = {"adapter": P.get("adapter", "mysql2"), "host": env.get("DATABASE_HOST", ""),
               "port": env.get("DATABASE_PORT", ""), "database": env.get("DATABASE_NAME", ""),
               "username": env.get("DATABASE_USERNAME", ""),
               "password": env.get("DATABASE_PASSWORD", ""), "source": "the env file's DATABASE_*"}
    adapter = cfg["adapter"] or P.get("adapter", "mysql2")
    host = cfg["host"]
    port = int(cfg["port"] or DEFAULT_PORTS.get(adapter, 3306))
    where = f"{cfg['username']}@{host or '(local socket)'}:{port}/{cfg['database']}"
    base = {"where": where, "source": cfg["source"], "config_error": said,
            "adapter": adapter}
    if not host:
        return {**base, "reachable": False, "error": "no host: the release would use a local "
                "socket", "login": {"ok": False, "stage": "connect",
                                    "error": "no host in the release's database settings"},
                "migrations": None, "privileges": None}
    result = login(adapter, host, port, cfg["username"], cfg["password"], cfg["database"],
                   after=questions(adapter, {"migrations": MIGRATIONS,
                                             "privileges": PRIVILEGES.get(adapter, ""),
                                             "tables": TABLES.get(adapter, "")}))
    answers = result.pop("answer", None) or {}
    reachable = result.get("ok") or result.get("stage") != "connect"
    ok = result.get("ok")
    return {**base, "reachable": bool(reachable), "error": result.get("error"),
            "login": result,
            "migrations": migrations(P["current"], answers.get("migrations")) if ok else None,
            "privileges": lacking(answers.get("privileges")) if ok else None,
            # read by the probe against the app's errors, then dropped (not reported)
            "tables": [row[0] for row in (answers.get("tables") or {}).get("rows", []) if row]
            if ok else None}


def lacking(answer: dict | None) -> dict:
    """What the privileges question answered: {"missing": ["pins: INSERT,UPDATE", ...]}."""
    if not answer or "rows" not in answer:
        return {"error": (answer or {}).get("error", "not asked")}
    return {"missing": [row[0] for row in answer["rows"] if row and row[0]][:10]}


def migrations(release: str, answer: dict | None) -> dict:
    """The release's migration files whose version schema_migrations does not list."""
    try:
        files = sorted(f for f in os.listdir(release + "/db/migrate") if f.endswith(".rb"))
    except OSError:
        files = []
    if not answer or "rows" not in answer:
        return {"files": len(files), "error": (answer or {}).get("error", "not asked")}
    ran = {row[0] for row in answer["rows"] if row}
    pending = [f for f in files if f.split("_", 1)[0].isdigit() and f.split("_", 1)[0] not in ran]
    return {"files": len(files), "ran": len(ran), "pending": pending[:10],
            "count": len(pending)}
