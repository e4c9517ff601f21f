"""Tiny fake MySQL and PostgreSQL servers for test_dblogin: each checks the client's answers
the way the real server does, from only the hash a server stores."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import random
import socket
import struct
import threading
from pathlib import Path

import pytest

from railsfab.onhost import dblogin

USER, PASSWORD, DB = "app", "s3cret-pa55 wörd", "app_db"
MODULE = Path(dblogin.__file__)


class ClientLeft(AssertionError):
    """The client hung up where the fake server waited for more."""


class Refused(Exception):  # noqa: N818 - what the client did: a way of ending, not an error
    """The client hung up where doing so is its right answer (it would not send the
    password): the script ends there, not a failure."""


class Peer:
    """The fake server's end of its one connection."""

    def __init__(self, conn: socket.socket, done: threading.Event):
        self.conn, self.done, self.seen = conn, done, {}

    def recv(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.conn.recv(n - len(buf))
            if not chunk:
                raise ClientLeft("the client closed the connection early")
            buf += chunk
        return buf

    def send(self, data: bytes) -> None:
        self.conn.sendall(data)


def run(adapter: str, script, *, password: str = PASSWORD, database: str = DB,
        timeout: float = 3.0) -> tuple[dict, dict]:
    """login() against `script(peer)` serving one connection: (its result, what the fake saw)."""
    listener = socket.create_server(("127.0.0.1", 0))
    done, failures, seen = threading.Event(), [], {}

    def serve():
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(5)
            peer = Peer(conn, done)
            try:
                script(peer)
            except Refused:
                pass
            except Exception as e:  # re-raised in the test's thread
                failures.append(e)
            seen.update(peer.seen)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        result = dblogin.login(adapter, "127.0.0.1", listener.getsockname()[1], USER, password,
                               database, timeout=timeout)
    finally:
        done.set()
        thread.join(5)
        listener.close()
    if failures:
        raise failures[0]
    assert password not in json.dumps(result, ensure_ascii=False)
    assert set(result) in ({"ok", "server", "ms"}, {"ok", "stage", "error", "code"})
    return result, seen


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def sha1(b: bytes) -> bytes:
    return hashlib.sha1(b).digest()


def sha256(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


# --- a fake MySQL server -----------------------------------------------------------------

def mysql_scramble() -> bytes:
    return bytes(random.randrange(1, 128) for _ in range(20))  # as mysqld: no NUL bytes


def my_packet(seq: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes([seq]) + payload


def my_recv(peer: Peer) -> tuple[int, bytes]:
    head = peer.recv(4)
    return head[3], peer.recv(int.from_bytes(head[:3], "little"))


def my_err(seq: int, errno: int, state: str, message: str) -> bytes:
    return my_packet(seq, b"\xff" + struct.pack("<H", errno) + b"#" + state.encode()
                     + message.encode())


def my_greeting(plugin: str, salt: bytes, version: str) -> bytes:
    caps = 0xFFFFF7FF  # everything but CLIENT_SSL
    return (b"\x0a" + version.encode() + b"\0" + struct.pack("<I", 42) + salt[:8] + b"\0"
            + struct.pack("<HBHHB", caps & 0xFFFF, 45, 2, caps >> 16, 21) + bytes(10)
            + salt[8:] + b"\0" + plugin.encode() + b"\0")


def my_response(payload: bytes) -> dict:
    """The client's HandshakeResponse41."""
    caps, _, _ = struct.unpack("<IIB", payload[:9])
    assert payload[9:32] == bytes(23)
    user, rest = payload[32:].split(b"\0", 1)
    auth, rest = rest[1:1 + rest[0]], rest[1 + rest[0]:]
    database, rest = rest.split(b"\0", 1) if caps & 0x8 else (b"", rest)
    return {"caps": caps, "user": user.decode(), "auth": auth, "database": database.decode(),
            "plugin": rest.split(b"\0")[0].decode()}


def mysql_check(plugin: str, password: str, reply: bytes, salt: bytes) -> bool:
    """How mysqld checks a scramble, knowing only the stored hash of the password."""
    if plugin == "mysql_native_password":
        stored = sha1(sha1(password.encode()))
        return len(reply) == 20 and sha1(xor(reply, sha1(salt + stored))) == stored
    stored = sha256(sha256(password.encode()))
    return len(reply) == 32 and sha256(xor(reply, sha256(stored + salt))) == stored


def mysql_server(account: str = "mysql_native_password", default: str | None = None, *,
                 password: str = PASSWORD, cached: bool = True, rsa=None,
                 granted: tuple[str, ...] = (DB,), version: str = "8.0.36"):
    """A MySQL 8 whose account `USER` uses plugin `account`; `default`: the greeting's plugin.
    caching_sha2_password without `cached` does full authentication with the key `rsa`."""
    def script(peer: Peer) -> None:
        salt = mysql_scramble()
        peer.send(my_packet(0, my_greeting(default or account, salt, version)))
        seq, payload = my_recv(peer)
        assert seq == 1
        response = peer.seen["response"] = my_response(payload)
        reply, seq = response["auth"], 2
        if response["plugin"] != account:  # auth switch request
            salt = mysql_scramble()
            peer.send(my_packet(seq, b"\xfe" + account.encode() + b"\0" + salt + b"\0"))
            seq, reply = my_recv(peer)
            peer.seen["switched"], seq = reply, seq + 1
        ok = mysql_check(account, password, reply, salt)
        if account == "caching_sha2_password":
            if ok and cached:
                peer.send(my_packet(seq, b"\x01\x03"))
                seq += 1
            else:
                ok, seq = mysql_full_auth(peer, seq, salt, rsa, password)
        if not ok:
            peer.send(my_err(seq, 1045, "28000", f"Access denied for user '{USER}'@'localhost'"
                                                 " (using password: YES)"))
        elif response["database"] not in granted:
            peer.send(my_err(seq, 1044, "42000", f"Access denied for user '{USER}'@'%' to "
                                                 f"database '{response['database']}'"))
        else:
            peer.send(my_packet(seq, b"\x00\x00\x00\x02\x00\x00\x00"))
            assert my_recv(peer) == (0, b"\x01")  # COM_QUIT
    return script


def answer_or_leave(peer: Peer, recv):
    """The client's next message; when it hangs up instead, seen["password_message"] stays
    unset and the script ends (Refused)."""
    try:
        got = recv(peer)
    except ClientLeft:
        raise Refused() from None
    peer.seen["password_message"] = True
    return got


def mysql_full_auth(peer: Peer, seq: int, salt: bytes, rsa, password: str) -> tuple[bool, int]:
    """caching_sha2_password's full authentication without TLS: the client asks for the
    public key, then sends (password + NUL) XOR scramble, RSA-OAEP encrypted."""
    pem, decrypt = rsa or pure_rsa()
    peer.send(my_packet(seq, b"\x01\x04"))
    asked = answer_or_leave(peer, my_recv)
    assert asked == (seq + 1, b"\x02")
    peer.send(my_packet(seq + 2, b"\x01" + pem))
    got, encrypted = my_recv(peer)
    assert got == seq + 3
    plain = decrypt(encrypted)
    pad = (salt * (len(plain) // 20 + 1))[:len(plain)]
    peer.seen["rsa_plain_len"] = len(plain)
    return xor(plain, pad) == password.encode() + b"\0", seq + 4


def der(tag: int, content: bytes) -> bytes:
    n = len(content)
    size = bytes([n]) if n < 128 else bytes([0x80 | (n.bit_length() + 7) // 8]) + \
        n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + size + content


def mgf1(seed: bytes, length: int) -> bytes:
    out = b"".join(sha1(seed + i.to_bytes(4, "big")) for i in range(length // 20 + 1))
    return out[:length]


def pure_rsa():
    """An RSA key from two Mersenne primes (2^521-1, 2^607-1), as a PEM SubjectPublicKeyInfo,
    and its OAEP(SHA-1) decryption written from RFC 8017."""
    p, q, e = 2**521 - 1, 2**607 - 1, 65537
    n, d = p * q, pow(e, -1, (p - 1) * (q - 1))

    def integer(x: int) -> bytes:
        return der(0x02, x.to_bytes(x.bit_length() // 8 + 1, "big"))

    rsa_oid = der(0x06, bytes.fromhex("2a864886f70d010101")) + der(0x05, b"")
    spki = der(0x30, der(0x30, rsa_oid) + der(0x03, b"\0" + der(0x30, integer(n) + integer(e))))
    pem = b"-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(spki) + b"-----END PUBLIC KEY-----\n"

    def decrypt(c: bytes) -> bytes:
        k = (n.bit_length() + 7) // 8
        assert len(c) == k
        em = pow(int.from_bytes(c, "big"), d, n).to_bytes(k, "big")
        assert em[0] == 0
        seed = xor(em[1:21], mgf1(em[21:], 20))
        db = xor(em[21:], mgf1(seed, k - 21))
        assert db[:20] == sha1(b"")
        rest = db[20:].lstrip(b"\0")
        assert rest[0] == 1
        return rest[1:]

    return pem, decrypt


def cryptography_rsa(pkcs1: bool):
    """A 2048-bit key and OAEP decryption from the `cryptography` package (moto's dependency)."""
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fmt = serialization.PublicFormat.PKCS1 if pkcs1 else \
        serialization.PublicFormat.SubjectPublicKeyInfo
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, fmt)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    return pem, lambda c: key.decrypt(c, oaep)


# --- a fake PostgreSQL server --------------------------------------------------------------

def pg_msg(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


def pg_recv(peer: Peer) -> tuple[bytes, bytes]:
    head = peer.recv(5)
    return head[:1], peer.recv(int.from_bytes(head[1:], "big") - 4)


def pg_auth(code: int, data: bytes = b"") -> bytes:
    return pg_msg(b"R", struct.pack("!I", code) + data)


def pg_error(code: str, message: str) -> bytes:
    fields = [b"SFATAL", b"VFATAL", b"C" + code.encode(), b"M" + message.encode()]
    return pg_msg(b"E", b"\0".join(fields) + b"\0\0")


def pg_startup(peer: Peer, ssl_answer: bytes = b"N") -> dict:
    assert peer.recv(8) == struct.pack("!II", 8, 80877103)  # SSLRequest
    peer.send(ssl_answer)
    length = int.from_bytes(peer.recv(4), "big")
    body = peer.recv(length - 4)
    assert body[:4] == struct.pack("!I", 196608) and body.endswith(b"\0\0")
    words = body[4:-2].decode().split("\0")
    return dict(zip(words[::2], words[1::2], strict=True))


def scram_server(peer: Peer, password: str, forge: bool) -> bool:
    """The server's side of SCRAM-SHA-256 (RFC 5802 section 3), from the stored keys only."""
    salt, rounds = os.urandom(16), 4096
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, rounds)
    stored = sha256(hmac.digest(salted, b"Client Key", "sha256"))
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    peer.send(pg_auth(10, b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"))
    kind, body = pg_recv(peer)
    mechanism, rest = body.split(b"\0", 1)
    assert (kind, mechanism) == (b"p", b"SCRAM-SHA-256")
    first = rest[4:4 + int.from_bytes(rest[:4], "big")].decode()
    assert first.startswith("n,,n=,r=")  # no channel binding; PostgreSQL ignores the name
    bare = first[3:]
    nonce = bare[5:] + base64.b64encode(os.urandom(12)).decode()
    server_first = f"r={nonce},s={base64.b64encode(salt).decode()},i={rounds}"
    peer.send(pg_auth(11, server_first.encode()))
    kind, body = pg_recv(peer)
    without_proof, _, proof = body.decode().rpartition(",p=")
    assert (kind, without_proof) == (b"p", f"c=biws,r={nonce}")
    message = f"{bare},{server_first},{without_proof}".encode()
    client_key = xor(base64.b64decode(proof), hmac.digest(stored, message, "sha256"))
    if sha256(client_key) != stored:
        return False
    signature = hmac.digest(server_key if not forge else b"forged", message, "sha256")
    peer.send(pg_auth(12, b"v=" + base64.b64encode(signature)))
    return True


def pg_server(method: str = "scram", *, password: str = PASSWORD, forge: bool = False,
              databases: tuple[str, ...] = (DB,)):
    def script(peer: Peer) -> None:
        params = peer.seen["startup"] = pg_startup(peer)
        if method == "scram":
            ok = scram_server(peer, password, forge)
        elif method == "md5":
            salt = os.urandom(4)
            peer.send(pg_auth(5, salt))
            inner = hashlib.md5((password + params["user"]).encode()).hexdigest()
            expected = b"md5" + hashlib.md5(inner.encode() + salt).hexdigest().encode() + b"\0"
            ok = answer_or_leave(peer, pg_recv) == (b"p", expected)
        else:
            peer.send(pg_auth(3))
            ok = answer_or_leave(peer, pg_recv) == (b"p", password.encode() + b"\0")
        if not ok:
            peer.send(pg_error("28P01", f'password authentication failed for user "{USER}"'))
            return
        if forge:
            return peer.done.wait(5)  # the client must hang up on a forged signature
        peer.send(pg_auth(0))
        if params["database"] not in databases:
            peer.send(pg_error("3D000", f'database "{params["database"]}" does not exist'))
            return
        peer.send(pg_msg(b"S", b"server_version\x0016.4 (Debian 16.4-1)\0")
                  + pg_msg(b"S", b"TimeZone\0UTC\0") + pg_msg(b"K", bytes(8))
                  + pg_msg(b"N", b"SNOTICE\0Mhello\0\0") + pg_msg(b"Z", b"I"))
        assert pg_recv(peer) == (b"X", b"")  # Terminate
    return script
