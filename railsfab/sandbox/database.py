"""The sandbox's database host: MariaDB standing in for RDS, with the app's database and user,
open to the sandbox subnet."""

from __future__ import annotations

import shlex

from railsfab import remote
from railsfab.inventory import Inventory
from railsfab.secrets import read_env_file

MARIADB_CNF = "/etc/mysql/mariadb.conf.d/60-railsfab.cnf"
MARIADB_SETTINGS = "[mysqld]\nbind-address = 0.0.0.0\n"


def ensure(inv: Inventory, conn) -> tuple[bool, str]:
    """MariaDB (standing in for RDS) with the app's database and user, open to the subnet."""
    db = inv.stage.app.database
    secrets = read_env_file(inv.resolve(inv.stage.app.secrets_file))
    password = secrets.get("DATABASE_PASSWORD", "")
    step = "mariadb"
    changed = False
    probe = remote.sh(conn, "dpkg-query -W -f='${Status}' mariadb-server 2>/dev/null; "
                      f"cat {MARIADB_CNF} 2>/dev/null; ss -Hltn 'sport = :3306'",
                      step=step, warn=True).stdout
    if "install ok installed" not in probe:
        remote.sh(conn, "DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                  "mariadb-server", sudo=True, step=step, timeout=600)
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
    return changed, f"database {db.name}, user {db.user}, port 3306"
