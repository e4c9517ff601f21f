"""The one query fab check asks in its database login (railsfab/onhost/dbquery.py): the
server's side is written into a socket pair, byte for byte as MySQL and PostgreSQL send it."""

from __future__ import annotations

import socket
import struct
import time

import pytest

from railsfab.onhost import check_db, dblogin, dbquery

SQL = dbquery.MIGRATIONS.encode()


def my(seq: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes([seq]) + payload


def lenenc(s: bytes) -> bytes:
    return bytes([len(s)]) + s


EOF_PACKET = b"\xfe\x00\x00\x02\x00"


def pg(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


def ask(adapter: str, reply: bytes, deadline: float = 1.0) -> tuple[dict, bytes]:
    """The answer to dbquery's question when the server replies `reply`, and what it sent."""
    client, server = socket.socketpair()
    with client, server:
        server.sendall(reply)
        wire = dblogin._Wire(client, time.monotonic() + deadline, deadline)
        answer = dbquery.question(adapter)(wire)
        server.setblocking(False)
        try:
            return answer, server.recv(4096)
        except BlockingIOError:  # it asked nothing
            return answer, b""


def test_mysql_rows():
    versions = [b"20261128130012", b"20261128130013"]
    reply = (my(1, b"\x01") + my(2, b"\x03def\x00coldef") + my(3, EOF_PACKET)
             + b"".join(my(4 + i, lenenc(v)) for i, v in enumerate(versions))
             + my(6, EOF_PACKET))
    answer, sent = ask("mysql2", reply)
    assert answer == {"rows": [["20261128130012"], ["20261128130013"]]}
    assert sent == my(0, b"\x03" + SQL)  # COM_QUERY, a new command: sequence 0


def test_mysql_error_is_an_answer():
    err = b"\xff" + struct.pack("<H", 1146) + b"#42S02" + b"Table 'x.schema_migrations' " \
          b"doesn't exist"
    answer, _ = ask("trilogy", my(1, err))
    assert answer == {"error": "MySQL error 1146 (42S02): Table 'x.schema_migrations' "
                               "doesn't exist"}


def test_postgresql_rows_nulls_and_errors():
    row = pg(b"D", struct.pack("!H", 2) + struct.pack("!i", 3) + b"v01" + struct.pack("!i", -1))
    reply = (pg(b"T", b"...") + row + pg(b"C", b"SELECT 1\0") + pg(b"Z", b"I"))
    answer, sent = ask("postgresql", reply)
    assert answer == {"rows": [["v01", None]]}
    assert sent == pg(b"Q", SQL + b"\0")
    missing = pg(b"E", b"SERROR\0C42P01\0Mrelation \"schema_migrations\" does not exist\0\0")
    answer, _ = ask("postgis", missing + pg(b"Z", b"I"))
    assert answer == {"error": 'ERROR: relation "schema_migrations" does not exist'}


def test_a_reply_cut_short_is_an_error_not_an_exception():
    answer, _ = ask("mysql2", my(1, b"\x01") + my(2, b"coldef"), deadline=0.2)
    assert "no answer from the server" in answer["error"]
    assert ask("oracle", b"")[0] == {"error": "no query for adapter 'oracle'"}


@pytest.fixture
def release(tmp_path):
    (tmp_path / "db/migrate").mkdir(parents=True)
    for name in ("20260101000000_a.rb", "20260102000000_b.rb", "README.md"):
        (tmp_path / "db/migrate" / name).write_text("")
    return str(tmp_path)


def test_migrations_the_database_has_not_run(release):
    ran = {"rows": [["20260101000000"], ["20250101000000"]]}
    assert check_db.migrations(release, ran) == {
        "files": 2, "ran": 2, "pending": ["20260102000000_b.rb"], "count": 1}
    assert check_db.migrations(release, {"error": "no table"}) == {"files": 2, "error": "no table"}
    assert check_db.migrations(release + "/none", {"rows": []})["count"] == 0
