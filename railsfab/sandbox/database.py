"""The sandbox's database host: MariaDB standing in for RDS, with the app's database and user,
open to the sandbox subnet."""

from __future__ import annotations

import shlex

from railsfab import commands, remote
from railsfab.inventory import Inventory
from railsfab.secrets import read_env_file

MARIADB_CNF = "/etc/mysql/mariadb.conf.d/60-railsfab.cnf"
MARIADB_SETTINGS = "[mysqld]\nbind-address = 0.0.0.0\n"


def ensure(inv: Inventory, conn) -> tuple[bool, str]:
    """The stage's database server (standing in for RDS), with the app's database and user."""
    if inv.stage.app.database.adapter == "postgresql":
        return ensure_postgresql(inv, conn)
    return ensure_mariadb(inv, conn)


def ensure_mariadb(inv: Inventory, conn) -> tuple[bool, str]:
    """MariaDB with the app's database and user, open to the subnet."""
    db = inv.stage.app.database
    secrets = read_env_file(inv.resolve(inv.stage.app.secrets_file))
    password = secrets.get("DATABASE_PASSWORD", "")
    step = "mariadb"
    changed = False
    probe = remote.sh(conn, "dpkg-query -W -f='${Status}' mariadb-server 2>/dev/null; "
                      f"cat {MARIADB_CNF} 2>/dev/null; ss -Hltn 'sport = :3306'",
                      step=step, warn=True).stdout
    if "install ok installed" not in probe:
        remote.sh(conn, commands.apt_install_script(["mariadb-server"], update=False),
                  sudo=True, step=step, timeout=900)
        changed = True
    # Check the live listener too: a file written by an interrupted run is not enough.
    if MARIADB_SETTINGS not in probe or "0.0.0.0:3306" not in probe:
        remote.sh(conn, f"cat > {MARIADB_CNF} && systemctl restart mariadb", sudo=True,
                  step=step, stdin=MARIADB_SETTINGS.encode())
        changed = True
    counts = remote.sh(conn, "mysql -N -e " + shlex.quote(
        f"SELECT COUNT(*) FROM mysql.user WHERE user='{db.user}' AND host='%';"
        f"SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name='{db.name}';"
    ), sudo=True, step=step).stdout.split()
    if counts != ["1", "1"]:
        # The password travels on stdin, never in a command line.
        sql = (
            f"CREATE DATABASE IF NOT EXISTS `{db.name}` CHARACTER SET utf8mb4;\n"
            f"CREATE USER IF NOT EXISTS '{db.user}'@'%' IDENTIFIED BY '{password}';\n"
            f"ALTER USER '{db.user}'@'%' IDENTIFIED BY '{password}';\n"
            f"GRANT ALL PRIVILEGES ON `{db.name}`.* TO '{db.user}'@'%';\n"
        )
        remote.sh(conn, "mysql", sudo=True, step=step, stdin=sql.encode())
        changed = True
    return changed, f"MariaDB: database {db.name}, user {db.user}, port {db.port}"


PG_CONF = "conf.d/60-railsfab.conf"
PG_SETTINGS = "listen_addresses = '*'\n"


def ensure_postgresql(inv: Inventory, conn) -> tuple[bool, str]:
    """PostgreSQL with the app's database and user (its owner), reachable from the sandbox's
    subnet with a password (scram-sha-256), as on RDS."""
    db = inv.stage.app.database
    secrets = read_env_file(inv.resolve(inv.stage.app.secrets_file))
    subnet = inv.stage.sandbox.subnet
    step, changed = "postgresql", False
    hba = f"host all all {subnet} scram-sha-256  # railsfab"
    probe = remote.sh(conn, "dpkg-query -W -f='${Status}' postgresql 2>/dev/null; "
                      f"cat /etc/postgresql/*/main/{PG_CONF} /etc/postgresql/*/main/pg_hba.conf "
                      "2>/dev/null; ss -Hltn 'sport = :5432'", step=step, warn=True).stdout
    if "install ok installed" not in probe:
        remote.sh(conn, commands.apt_install_script(["postgresql"], update=False),
                  sudo=True, step=step, timeout=900)
        changed = True
    if PG_SETTINGS not in probe or hba not in probe or f"0.0.0.0:{db.port}" not in probe:
        remote.sh(conn, f"""d=$(ls -d /etc/postgresql/*/main | tail -n 1) &&
cat > "$d/{PG_CONF}" && (grep -qF {shlex.quote(hba)} "$d/pg_hba.conf" ||
echo {shlex.quote(hba)} >> "$d/pg_hba.conf") && systemctl restart postgresql""",
                  sudo=True, step=step, stdin=PG_SETTINGS.encode())
        changed = True
    user, name = _pg_ident(db.user), _pg_ident(db.name)
    psql = "cd / && runuser -u postgres -- psql -q -t -A -v ON_ERROR_STOP=1"
    had = remote.sh(conn, psql, sudo=True, step=step, stdin=(
        f"SELECT (SELECT count(*) FROM pg_roles WHERE rolname = {_pg_str(db.user)}) || ' ' || "
        f"(SELECT count(*) FROM pg_database WHERE datname = {_pg_str(db.name)});\n"
    ).encode()).stdout.split()
    # The password travels on stdin, never in a command line; set every time (idempotent).
    password = _pg_str(secrets.get("DATABASE_PASSWORD", ""))
    sql = (f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {_pg_str(db.user)})"
           f" THEN CREATE ROLE {user} LOGIN; END IF; END $$;\n"
           f"ALTER ROLE {user} LOGIN PASSWORD {password};\n"
           f"SELECT 'CREATE DATABASE {name} OWNER {user}' WHERE NOT EXISTS "
           f"(SELECT FROM pg_database WHERE datname = {_pg_str(db.name)})\\gexec\n")
    remote.sh(conn, psql, sudo=True, step=step, stdin=sql.encode())
    changed |= had != ["1", "1"]
    return changed, f"PostgreSQL: database {db.name}, user {db.user}, port {db.port}"


def _pg_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _pg_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
