"""`fab check`'s one question to the app's database, asked in the session of its login
(dblogin.login's `after`): which migrations have run (Rails' schema_migrations).

Each server's text protocol, just far enough for one query whose answer is rows of short
strings: MySQL's COM_QUERY (column definitions, an EOF, the rows, an EOF: dblogin does not
ask for CLIENT_DEPRECATE_EOF), PostgreSQL's simple Query (DataRows up to ReadyForQuery).
Standard library only, nothing runs at import; a failure is an answer ({"error": ...}), never
an exception, so the login's own verdict stands.
"""

from __future__ import annotations

try:  # on the host, onhost/dblogin.py's text comes first in the same program
    from railsfab.onhost.dblogin import (
        _Fail,
        _my_error,
        _my_read,
        _my_write,
        _pg_error,
        _pg_read,
        _pg_send,
    )
except ImportError:  # pragma: no cover
    pass

MIGRATIONS = "SELECT version FROM schema_migrations"
# The app's tables the user may not read and write (PostgreSQL: per table; has_table_privilege
# with several privileges is true if any one is held, so each is asked), or the write
# privileges it lacks on the database (MySQL/MariaDB: database-wide and global grants).
_PG_EACH = "".join(f"CASE WHEN NOT has_table_privilege(c.oid, '{p}') THEN ',{p}' ELSE '' END || "
                   for p in ("SELECT", "INSERT", "UPDATE", "DELETE"))
PRIVILEGES = {
    "postgresql": (
        f"SELECT c.relname || ': ' || substr({_PG_EACH}'', 2) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' "
        "AND n.nspname = current_schema() AND c.relname NOT IN ('schema_migrations', "
        "'ar_internal_metadata') AND NOT (has_table_privilege(c.oid, 'SELECT') AND "
        "has_table_privilege(c.oid, 'INSERT') AND has_table_privilege(c.oid, 'UPDATE') AND "
        "has_table_privilege(c.oid, 'DELETE')) ORDER BY 1"),
    "mysql2": (
        "SELECT CONCAT('(the database): ', p.priv) FROM (SELECT 'SELECT' AS priv UNION ALL "
        "SELECT 'INSERT' UNION ALL SELECT 'UPDATE' UNION ALL SELECT 'DELETE') p WHERE "
        "p.priv NOT IN (SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES "
        "WHERE DATABASE() LIKE TABLE_SCHEMA) AND p.priv NOT IN (SELECT PRIVILEGE_TYPE FROM "
        "information_schema.USER_PRIVILEGES)"),
}
PRIVILEGES["trilogy"] = PRIVILEGES["mysql"] = PRIVILEGES["mysql2"]
# The tables of the app's database (schema): what a "table doesn't exist" is checked against
TABLES = {"postgresql": "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()",
          "mysql2": "SHOW TABLES"}
TABLES["trilogy"] = TABLES["mysql"] = TABLES["mysql2"]


def _lenenc(p: bytes, i: int) -> tuple[int | None, int]:
    """MySQL's length-encoded integer at `i` (None: the NULL marker), and what follows it."""
    first = p[i]
    if first < 0xFB:
        return first, i + 1
    if first == 0xFB:
        return None, i + 1
    size = {0xFC: 2, 0xFD: 3, 0xFE: 8}[first]
    return int.from_bytes(p[i + 1:i + 1 + size], "little"), i + 1 + size


def _my_row(p: bytes, columns: int) -> list[str | None]:
    row, i = [], 0
    for _ in range(columns):
        n, i = _lenenc(p, i)
        row.append(None if n is None else p[i:i + n].decode("utf-8", "replace"))
        i += n or 0
    return row


def _my_query(wire, sql: str) -> dict:
    wire.seq = 0
    _my_write(wire, b"\x03" + sql.encode())
    p = _my_read(wire)
    if p[:1] in (b"\xff", b"\x00"):  # an error, or OK: no rows
        return {"error": _my_error(p)[0]} if p[:1] == b"\xff" else {"rows": []}
    columns, _ = _lenenc(p, 0)
    for _ in range(columns or 0):
        _my_read(wire)
    _my_read(wire)  # the EOF after the column definitions
    rows = []
    while True:
        p = _my_read(wire)
        if p[:1] == b"\xfe" and len(p) < 9:
            return {"rows": rows}
        if p[:1] == b"\xff":
            return {"error": _my_error(p)[0]}
        rows.append(_my_row(p, columns or 0))


def _pg_query(wire, sql: str) -> dict:
    _pg_send(wire, b"Q", sql.encode() + b"\0")
    rows, error = [], None
    while True:
        kind, body = _pg_read(wire)
        if kind == b"D":
            row, i = [], 2
            for _ in range(int.from_bytes(body[:2], "big")):
                n = int.from_bytes(body[i:i + 4], "big", signed=True)
                row.append(None if n < 0 else body[i + 4:i + 4 + n].decode("utf-8", "replace"))
                i += 4 + max(n, 0)
            rows.append(row)
        elif kind == b"E":
            error = _pg_error(wire, body).error
        elif kind == b"Z":
            return {"error": error} if error else {"rows": rows}


_QUERY = {"mysql2": _my_query, "trilogy": _my_query, "mysql": _my_query,
          "postgresql": _pg_query, "postgis": _pg_query}


def questions(adapter: str, sqls: dict[str, str]):
    """dblogin.login's `after` asking several queries in one session: {name: answer}."""
    asks = {name: question(adapter, sql) for name, sql in sqls.items() if sql}

    def ask(wire) -> dict:
        return {name: one(wire) for name, one in asks.items()}
    return ask


def question(adapter: str, sql: str = MIGRATIONS):
    """What dblogin.login's `after` asks: `sql`, answered {"rows": [...]} or {"error": ...}."""
    query = _QUERY.get(adapter)

    def ask(wire) -> dict:
        if query is None:
            return {"error": f"no query for adapter {adapter!r}"}
        try:
            return query(wire, sql)
        except _Fail as f:
            return {"error": f.error}
        except (IndexError, KeyError, ValueError) as e:  # a reply these parsers cannot read
            return {"error": f"unexpected reply ({type(e).__name__})"}
    return ask
