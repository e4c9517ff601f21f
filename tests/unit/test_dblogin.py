"""The on-host database login (railsfab/onhost/dblogin.py) against tiny fake servers.

Each case runs one scripted fake MySQL or PostgreSQL server in a thread on 127.0.0.1 (port 0).
The fakes check the client's answers the way the real servers do (they keep only the hash a
server stores, and verify the scramble, SCRAM proof or RSA-encrypted password from it), so the
client's crypto is checked independently of the module's own code.
"""

from __future__ import annotations

import ast
import contextlib
import random
import socket
import sys
import time

import pytest

from railsfab.onhost import dblogin
from tests.unit.dbfakes import (
    DB,
    MODULE,
    PASSWORD,
    USER,
    cryptography_rsa,
    my_err,
    my_greeting,
    my_packet,
    my_recv,
    mysql_scramble,
    mysql_server,
    pg_auth,
    pg_error,
    pg_msg,
    pg_server,
    pg_startup,
    pure_rsa,
    run,
)

# --- MySQL cases ---------------------------------------------------------------------------

def test_mysql_native_password():
    result, seen = run("mysql2", mysql_server("mysql_native_password"))
    assert result["ok"] is True and result["server"] == "8.0.36"
    assert isinstance(result["ms"], int) and result["ms"] >= 0
    r = seen["response"]
    assert (r["user"], r["database"], r["plugin"]) == (USER, DB, "mysql_native_password")
    assert r["caps"] & 0x8 and r["caps"] & 0x200 and r["caps"] & 0x80000  # WITH_DB, 41, PLUGIN
    assert not r["caps"] & 0x800  # no TLS asked for


def test_mysql_caching_sha2_fast_path():
    result, seen = run("mysql2", mysql_server("caching_sha2_password"))
    assert result["ok"] is True
    assert seen["response"]["plugin"] == "caching_sha2_password"
    assert len(seen["response"]["auth"]) == 32


@pytest.mark.parametrize("key", ["pure", "spki", "pkcs1"])
@pytest.mark.parametrize("password", [PASSWORD, "wrong"])
def test_mysql_full_authentication_over_plain_tcp_sends_no_password(key, password):
    """Whoever answers as the database could send its own RSA key and decrypt what comes:
    the login is not tried, and said so (stage "insecure", not a credentials failure)."""
    rsa = pure_rsa() if key == "pure" else cryptography_rsa(pkcs1=key == "pkcs1")
    result, seen = run("mysql2", mysql_server("caching_sha2_password", cached=False, rsa=rsa),
                       password=password)
    assert result["ok"] is False and result["stage"] == "insecure", result
    assert "not sent" in result["error"] and password not in result["error"]
    assert "rsa_plain_len" not in seen


@pytest.mark.parametrize("account,default", [
    ("mysql_native_password", "caching_sha2_password"),
    ("caching_sha2_password", "mysql_native_password"),
    ("caching_sha2_password", "client_ed25519"),  # an unknown default: answer natively
])
def test_mysql_auth_switch(account, default):
    result, seen = run("mysql2", mysql_server(account, default))
    assert result["ok"] is True, result
    expected_first = default if default != "client_ed25519" else "mysql_native_password"
    assert seen["response"]["plugin"] == expected_first
    assert "switched" in seen


def test_mysql_wrong_password():
    result, _ = run("mysql2", mysql_server("mysql_native_password"), password="not it")
    assert result["ok"] is False and result["stage"] == "auth" and result["code"] == "1045"
    assert "Access denied for user 'app'@'localhost'" in result["error"]


def test_mysql_caching_sha2_wrong_password_cannot_be_told_without_sending_it():
    """MySQL answers a fast-path scramble it cannot match with a request for full
    authentication, as for an account not in its cache: no password goes out to find out."""
    result, seen = run("mysql2", mysql_server("caching_sha2_password"), password="not it")
    assert result["ok"] is False and result["stage"] == "insecure", result
    assert "password_message" not in seen


def test_mysql_database_not_granted_or_unknown():
    result, seen = run("mysql2", mysql_server(), database="other_db")
    assert seen["response"]["database"] == "other_db"
    assert result == {"ok": False, "stage": "database", "code": "1044", "error":
                      "MySQL error 1044 (42000): Access denied for user 'app'@'%' to database "
                      "'other_db'"}

    def unknown(peer):
        peer.send(my_packet(0, my_greeting("mysql_native_password", mysql_scramble(), "8.0.36")))
        my_recv(peer)
        peer.send(my_err(2, 1049, "42000", "Unknown database 'nope'"))

    result, _ = run("mysql2", unknown, database="nope")
    assert result["stage"] == "database" and result["code"] == "1049"
    assert result["error"].endswith("Unknown database 'nope'")


def test_mysql_mariadb_version_and_unsupported_plugin():
    result, _ = run("mysql2", mysql_server(version="5.5.5-10.11.6-MariaDB-0+deb12u1"))
    assert result["server"] == "10.11.6-MariaDB-0+deb12u1"

    def switch_to_ed25519(peer):
        peer.send(my_packet(0, my_greeting("mysql_native_password", mysql_scramble(), "8.0")))
        my_recv(peer)
        peer.send(my_packet(2, b"\xfeclient_ed25519\0" + bytes(32)))

    result, _ = run("mysql2", switch_to_ed25519)
    assert result["ok"] is False and result["stage"] == "auth"
    assert "client_ed25519" in result["error"]


def test_mysql_error_instead_of_greeting():
    def refuse(peer):
        peer.send(my_packet(0, b"\xff\x6a\x04Host '10.0.0.9' is not allowed to connect"))

    result, _ = run("mysql2", refuse)
    assert result == {"ok": False, "stage": "handshake", "code": "1130",
                      "error": "MySQL error 1130: Host '10.0.0.9' is not allowed to connect"}


# --- PostgreSQL cases ----------------------------------------------------------------------

def test_postgresql_login():
    result, seen = run("postgresql", pg_server("scram"))
    assert result["ok"] is True, result
    assert result["server"] == "16.4 (Debian 16.4-1)"
    assert seen["startup"]["user"] == USER and seen["startup"]["database"] == DB


@pytest.mark.parametrize("method, said", [("md5", "md5"), ("password", "cleartext")])
def test_postgresql_cleartext_or_md5_to_an_unverified_server_sends_nothing(method, said):
    """A server that declines TLS (or one nobody verified) asking for the password: it is
    not sent, and the result says why (the fake server sees no password message)."""
    result, seen = run("postgresql", pg_server(method))
    assert result["ok"] is False and result["stage"] == "insecure", result
    assert f"asks for {said} password authentication" in result["error"]
    assert "password_message" not in seen


@pytest.mark.parametrize("method", ["scram"])
def test_postgresql_wrong_password(method):
    result, _ = run("postgresql", pg_server(method), password="not it")
    assert result == {"ok": False, "stage": "auth", "code": "28P01",
                      "error": 'FATAL: password authentication failed for user "app"'}


def test_postgresql_unknown_database():
    result, seen = run("postgresql", pg_server(), database="nope")
    assert seen["startup"]["database"] == "nope"
    assert result == {"ok": False, "stage": "database", "code": "3D000",
                      "error": 'FATAL: database "nope" does not exist'}


def test_postgresql_forged_server_signature_is_refused():
    result, _ = run("postgresql", pg_server(forge=True), timeout=2)
    assert result["ok"] is False and result["stage"] == "auth"
    assert "SCRAM signature" in result["error"]


def test_postgresql_rejected_before_authentication():
    def reject(peer):
        pg_startup(peer)
        peer.send(pg_error("28000", 'no pg_hba.conf entry for host "10.0.0.9", user "app", '
                                    'database "app_db", no encryption'))

    result, _ = run("postgresql", reject)
    assert result["stage"] == "auth" and result["code"] == "28000"
    assert "no pg_hba.conf entry" in result["error"]


def test_scram_rfc7677_example():
    """RFC 7677 section 3's exchange (user "user", password "pencil")."""
    scram = dblogin._Scram(b"pencil")
    scram.bare = "n=user,r=rOprNGfwEbeRWgbNEkqO"
    final = scram.final(None, b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                              b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
    assert final == (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                     b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    scram.check(None, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")


# --- failures before or outside the protocols ------------------------------------------------

@pytest.mark.parametrize("adapter", ["mysql2", "postgresql"])
def test_connection_refused(adapter):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        result = dblogin.login(adapter, "127.0.0.1", port, USER, PASSWORD, DB, timeout=2)
    assert result["ok"] is False and result["stage"] == "connect" and result["code"] == ""
    assert "refused" in result["error"].lower()


@pytest.mark.parametrize("adapter", ["mysql2", "postgresql"])
def test_server_that_hangs(adapter):
    start = time.monotonic()
    result, _ = run(adapter, lambda peer: peer.done.wait(10), timeout=0.3)
    assert time.monotonic() - start < 2
    assert result == {"ok": False, "stage": "handshake", "code": "",
                      "error": "no answer from the server within 0.3 s"}


GARBAGE = [b"", b"\0", b"HTTP/1.1 400 Bad Request\r\n\r\n", b"SSH-2.0-OpenSSH_9.2\r\n",
           b"\x05\0\0\0\x0a8.0\0", b"\x30\0\0\0\x0a8.0.36\0" + bytes(10), b"N", b"NR\0\0\0\x08",
           b"NR\0\0\0\x0c\0\0\0\x0aSCRAM-SHA-256\0", b"NE\0\0\0\x05", b"NZ\xff\xff\xff\xff",
           b"S", b"\xff\xff\xff\x00", b"\x01\0\0\0\xff"]


def garbage(adapter: str, rng: random.Random) -> list[bytes]:
    """Junk, then real openings cut short or with random bytes changed."""
    if adapter == "mysql2":
        real = my_packet(0, my_greeting("caching_sha2_password", mysql_scramble(), "8.0.36"))
    else:
        real = b"N" + pg_auth(10, b"SCRAM-SHA-256\0\0") + pg_auth(0) + pg_msg(b"Z", b"I")
    cut = [real[:n] for n in range(0, len(real), 7)]
    changed = []
    for _ in range(15):
        blob = bytearray(real)
        for _ in range(rng.randrange(1, 4)):
            blob[rng.randrange(len(blob))] = rng.randrange(256)
        changed.append(bytes(blob))
    return GARBAGE + cut + changed + [rng.randbytes(rng.randrange(1, 200)) for _ in range(8)]


@pytest.mark.parametrize("adapter", ["mysql2", "postgresql"])
def test_garbage_from_the_server(adapter):
    def script(peer, blob):
        if adapter == "postgresql":
            peer.recv(8)  # SSLRequest
        with contextlib.suppress(OSError):  # the client may hang up at any point
            peer.send(blob)
            peer.conn.shutdown(socket.SHUT_WR)
            while peer.conn.recv(4096):
                pass

    for blob in garbage(adapter, random.Random(7)):
        result, _ = run(adapter, lambda peer, blob=blob: script(peer, blob), timeout=1)
        assert result["ok"] is False, blob
        assert result["stage"] in ("handshake", "auth", "database"), (blob, result)


def test_parameters_that_make_no_sense():
    assert dblogin.login("sqlite3", "h", 1, "u", "p", "d")["stage"] == "connect"
    result = dblogin.login("mysql2", "127.0.0.1", "not a port", "u", "p", "d")
    assert result["ok"] is False and result["stage"] == "connect"
    result = dblogin.login("postgresql", "127.0.0.1", 5432, "u", None, "d", timeout=2)
    assert result["ok"] is False and result["stage"] in ("connect", "handshake")


def test_prints_nothing(capsys):
    run("mysql2", mysql_server())
    run("postgresql", pg_server(), password="not it")
    run("postgresql", lambda peer: peer.send(b"garbage"))
    assert capsys.readouterr() == ("", "")


def test_module_is_standard_library_python39_with_nothing_run_at_import():
    tree = ast.parse(MODULE.read_text(), feature_version=(3, 9))
    for node in tree.body:
        assert isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef,
                                 ast.Assign, ast.Expr)), ast.dump(node)[:80]
        if isinstance(node, ast.Expr):  # only the docstring
            assert isinstance(node.value, ast.Constant)
        if isinstance(node, ast.Assign):  # constants: no calls at import
            assert not any(isinstance(n, ast.Call) for n in ast.walk(node.value))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported - {"__future__"} <= sys.stdlib_module_names
    assert "logging" not in imported and "print(" not in MODULE.read_text()
    assert len(MODULE.read_text().splitlines()) < 400
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            assert node.end_lineno - node.lineno < 60, node.name
