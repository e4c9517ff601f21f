"""`fab check`'s database login: prove on a web host that the app's credentials really log in.

Standard library only (a bare Debian host has python3, no MySQL/PostgreSQL client): it
speaks each wire protocol itself, far enough to log in, select the database, ask what
`after` asks (onhost/dbquery.py) and say goodbye. Nothing runs at import. `login()` never
raises, never prints and never puts the password in what it returns.

- mysql2 (MySQL, MariaDB, Amazon RDS): handshake v10 with CLIENT_CONNECT_WITH_DB, plugins
  mysql_native_password and caching_sha2_password's fast path, the auth switch request; then
  COM_QUIT. No TLS: a server that demands it answers with its own error. caching_sha2's full
  authentication (the password encrypted to an RSA key the server itself sends) is refused:
  whoever answers as the database would get the password.
- postgresql: SSLRequest first; on 'S' the session is TLS-wrapped without verifying the
  certificate (libpq's default sslmode=prefer), on 'N' it stays plain. Then the StartupMessage
  and SCRAM-SHA-256 (no channel binding, the server's signature is checked), up to
  ReadyForQuery; then Terminate. Cleartext and md5 are refused (the server is not verified:
  the password, or a hash of it, would go to whoever answers). ("trilogy", "postgis": as
  "mysql2", "postgresql".)
A login refused for either reason has stage "insecure": not tried, nothing sent.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import socket
import ssl
import struct
import time

_TIMEOUTS = (TimeoutError, socket.timeout)  # distinct classes before Python 3.10
_BIGGEST = 1 << 20  # no reply a login needs is larger: anything bigger is not our protocol

# MySQL client capabilities: LONG_PASSWORD, LONG_FLAG, PROTOCOL_41, TRANSACTIONS,
# SECURE_CONNECTION, PLUGIN_AUTH; CONNECT_WITH_DB is added when there is a database.
_MY_CAPS = 0x1 | 0x4 | 0x200 | 0x2000 | 0x8000 | 0x80000
_MY_WITH_DB, _MY_41, _MY_SECURE, _MY_PLUGIN = 0x8, 0x200, 0x8000, 0x80000
_MY_DB_ERRORS = ("1044", "1049")  # access denied to the database, unknown database
_PG_STAGE = {"28P01": "auth", "28000": "auth", "3D000": "database", "42501": "database"}
# The stage of a login not tried: the server asked for a way that would give the password
# to whoever answers.
INSECURE = "insecure"


class _Fail(Exception):
    """The login failed at `stage`, with the server's message (or the OS's) and its code."""

    def __init__(self, stage: str, error: str, code: str = ""):
        super().__init__(error)
        self.stage, self.error, self.code = stage, error, code


class _Wire:
    """The connection, with one deadline for the whole login; reads exact byte counts."""

    def __init__(self, sock: socket.socket, deadline: float, timeout: float, after=None):
        self.sock, self.deadline, self.timeout = sock, deadline, timeout
        self.stage, self.seq, self.after, self.answer = "handshake", 0, after, None

    def _arm(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise _Fail(self.stage, f"no answer from the server within {self.timeout:g} s")
        self.sock.settimeout(left)

    def _oserror(self, e: OSError) -> _Fail:
        if isinstance(e, _TIMEOUTS):
            return _Fail(self.stage, f"no answer from the server within {self.timeout:g} s")
        return _Fail(self.stage, str(e) or type(e).__name__)

    def read(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            self._arm()
            try:
                chunk = self.sock.recv(min(n - len(buf), 65536))
            except OSError as e:
                raise self._oserror(e) from None
            if not chunk:
                raise _Fail(self.stage, "the server closed the connection")
            buf += chunk
        return buf

    def write(self, data: bytes) -> None:
        self._arm()
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise self._oserror(e) from None

    def starttls(self) -> None:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        self._arm()
        try:
            self.sock = context.wrap_socket(self.sock)
        except OSError as e:
            raise _Fail(self.stage, f"TLS handshake: {self._oserror(e).error}") from None

    def goodbye(self, data: bytes) -> None:
        """After `after(wire)`'s question, the protocol's last message (errors don't matter)."""
        if self.after:
            self.stage, self.answer = "query", self.after(self)
            self.seq = 0
        with contextlib.suppress(_Fail):
            self.write(data)


def _xor(a: bytes, b: bytes) -> bytes:
    """a XOR b, byte by byte (b at least as long as a)."""
    return (int.from_bytes(a, "big") ^ int.from_bytes(b[:len(a)], "big")).to_bytes(len(a), "big")


def _bad(wire: _Wire, what: str) -> _Fail:
    return _Fail(wire.stage, f"unexpected reply from the server: {what}")


def _my_read(wire: _Wire) -> bytes:
    head = wire.read(4)
    length = int.from_bytes(head[:3], "little")
    if length > _BIGGEST:
        raise _bad(wire, f"not a MySQL packet ({length} bytes)")
    wire.seq = head[3] + 1
    return wire.read(length)


def _my_write(wire: _Wire, payload: bytes) -> None:
    wire.write(len(payload).to_bytes(3, "little") + bytes([wire.seq & 0xFF]) + payload)
    wire.seq += 1


def _my_error(payload: bytes) -> tuple[str, str]:
    """An ERR packet's text, 'MySQL error 1045 (28000): Access denied ...', and its errno."""
    code, rest, state = int.from_bytes(payload[1:3], "little"), payload[3:], ""
    if rest[:1] == b"#":
        state, rest = f" ({rest[1:6].decode('ascii', 'replace')})", rest[6:]
    return f"MySQL error {code}{state}: {rest.decode('utf-8', 'replace')}", str(code)


def _my_greeting(wire: _Wire, p: bytes) -> tuple[str, bytes, str]:
    """The initial handshake packet (v10): server version, 20-byte scramble, auth plugin."""
    if p[:1] == b"\xff":
        raise _Fail("handshake", *_my_error(p))
    if p[:1] != b"\x0a":
        raise _bad(wire, f"not a MySQL handshake (protocol {p[:1].hex() or 'none'})")
    end = p.index(b"\0", 1)
    version = p[1:end].decode("utf-8", "replace")
    if version.startswith("5.5.5-"):  # MariaDB's prefix for old replication clients
        version = version[6:]
    pos = end + 5  # skip the connection id
    salt, caps = p[pos:pos + 8], int.from_bytes(p[pos + 9:pos + 11], "little")
    plugin, pos = "mysql_native_password", pos + 11
    if len(p) > pos:
        caps |= int.from_bytes(p[pos + 3:pos + 5], "little") << 16
        more = max(13, p[pos + 5] - 8) if caps & _MY_SECURE else 0
        salt += p[pos + 16:pos + 16 + more]
        if caps & _MY_PLUGIN:
            plugin = p[pos + 16 + more:].split(b"\0", 1)[0].decode("ascii", "replace")
    if not caps & _MY_41 or not caps & _MY_SECURE or len(salt) < 20:
        raise _Fail("handshake", f"MySQL server {version} is too old (no 4.1 authentication)")
    return version, salt[:20], plugin


def _my_scramble(plugin: str, pw: bytes, salt: bytes) -> bytes:
    """The auth response for `plugin`, from the password and the server's 20-byte scramble."""
    if plugin == "mysql_native_password":
        h = hashlib.sha1(pw).digest()
        return _xor(h, hashlib.sha1(salt + hashlib.sha1(h).digest()).digest()) if pw else b""
    if plugin == "caching_sha2_password":
        h = hashlib.sha256(pw).digest()
        mix = hashlib.sha256(hashlib.sha256(h).digest() + salt).digest()
        return _xor(h, mix) if pw else b""
    raise _Fail("auth", f"the server asks for auth plugin {plugin!r}, which this check "
                        "does not implement (mysql_native_password, caching_sha2_password)")


def _my_auth(wire: _Wire, plugin: str, pw: bytes, salt: bytes) -> None:
    """Answer the server until its OK (logged in, database selected) or its ERR."""
    while True:
        p = _my_read(wire)
        if p[:1] == b"\x00":
            return
        if p[:1] == b"\xff":
            text, code = _my_error(p)
            raise _Fail("database" if code in _MY_DB_ERRORS else "auth", text, code)
        if p[:1] == b"\xfe":  # auth switch request: another plugin, a fresh scramble
            name, _, data = p[1:].partition(b"\0")
            if not name:
                raise _Fail("auth", "the server asks for the pre-4.1 password hash")
            plugin, salt = name.decode("ascii", "replace"), data[:20]
            _my_write(wire, _my_scramble(plugin, pw, salt))
        elif p[:1] != b"\x01" or plugin != "caching_sha2_password":
            raise _bad(wire, f"packet {p[:8].hex()!r} during authentication")
        elif p[1:] == b"\x04":
            # Full authentication on a plain connection: the password would go to whoever
            # answers, encrypted to an RSA key that same party supplies. Not sent (MySQL's
            # own client refuses it too, unless told to fetch the server's key).
            raise _Fail(INSECURE, "the server asks for caching_sha2_password's full "
                        "authentication over plain TCP (the password, encrypted to a key the "
                        "server itself sends): not sent; the login is proven once the "
                        "account's password is in the server's cache (after the app logs in)")
        elif p[1:] != b"\x03":  # 3: fast authentication succeeded, the OK packet follows
            raise _bad(wire, f"caching_sha2_password data {p[1:9].hex()!r}")


def _mysql(wire: _Wire, user: str, password: str, database: str) -> str:
    version, salt, plugin = _my_greeting(wire, _my_read(wire))
    if plugin not in ("mysql_native_password", "caching_sha2_password"):
        plugin = "mysql_native_password"  # the server switches us if the account needs another
    pw = password.encode()
    caps = _MY_CAPS | (_MY_WITH_DB if database else 0)
    auth = _my_scramble(plugin, pw, salt)
    response = (struct.pack("<IIB23x", caps, 1 << 24, 45) + user.encode() + b"\0"
                + bytes([len(auth)]) + auth + (database.encode() + b"\0" if database else b"")
                + plugin.encode() + b"\0")
    wire.stage = "auth"
    _my_write(wire, response)
    _my_auth(wire, plugin, pw, salt)
    wire.seq = 0
    wire.goodbye(b"\x01\x00\x00\x00\x01")  # COM_QUIT
    return version


def _pg_read(wire: _Wire) -> tuple[bytes, bytes]:
    head = wire.read(5)
    length = int.from_bytes(head[1:], "big")
    if not head[:1].isalpha() or not 4 <= length <= _BIGGEST:
        raise _bad(wire, f"not a PostgreSQL message ({head.hex()})")
    return head[:1], wire.read(length - 4)


def _pg_send(wire: _Wire, kind: bytes, body: bytes) -> None:
    wire.write(kind + struct.pack("!I", len(body) + 4) + body)


def _pg_error(wire: _Wire, body: bytes) -> _Fail:
    """An ErrorResponse: 'FATAL: password authentication failed ...', and its SQLSTATE."""
    fields = {f[:1]: f[1:].decode("utf-8", "replace") for f in body.split(b"\0") if f}
    code = fields.get(b"C", "")
    text = f"{fields.get(b'S') or fields.get(b'V') or 'ERROR'}: {fields.get(b'M', '')}" + (
        f" DETAIL: {fields[b'D']}" if fields.get(b"D") else "")
    return _Fail(_PG_STAGE.get(code, wire.stage), text, code)


class _Scram:
    """SCRAM-SHA-256, client side (RFC 5802, RFC 7677), without channel binding."""

    def __init__(self, password: bytes):
        self.password = password
        self.bare = "n=,r=" + base64.b64encode(os.urandom(18)).decode()
        self.server_key = self.message = b""

    def first(self) -> bytes:
        message = b"n,," + self.bare.encode()
        return b"SCRAM-SHA-256\0" + struct.pack("!I", len(message)) + message

    def final(self, wire: _Wire, server_first: bytes) -> bytes:
        said = server_first.decode()
        attrs = dict(kv.split("=", 1) for kv in said.split(","))
        nonce, salt, rounds = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
        if not nonce.startswith(self.bare.split(",r=")[1]) or not 0 < rounds <= 10_000_000:
            raise _bad(wire, "SCRAM server-first-message")
        salted = hashlib.pbkdf2_hmac("sha256", self.password, salt, rounds)
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        without_proof = f"c=biws,r={nonce}"
        self.message = f"{self.bare},{said},{without_proof}".encode()
        self.server_key = hmac.digest(salted, b"Server Key", "sha256")
        stored = hashlib.sha256(client_key).digest()
        proof = _xor(client_key, hmac.digest(stored, self.message, "sha256"))
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def check(self, wire: _Wire, server_final: bytes) -> None:
        said = server_final.decode("utf-8", "replace")
        want = hmac.digest(self.server_key, self.message, "sha256")
        if not said.startswith("v=") or not hmac.compare_digest(base64.b64decode(said[2:]), want):
            raise _Fail("auth", f"the server's SCRAM signature is wrong ({said[:40]!r})")


def _pg_auth(wire: _Wire, body: bytes, password: str, scram: _Scram | None):
    """Answer one Authentication message; returns the SCRAM exchange in progress."""
    code, data = int.from_bytes(body[:4], "big"), body[4:]
    if code == 0:  # AuthenticationOk: the server now opens the database
        wire.stage = "database"
        return None
    wire.stage, pw = "auth", password.encode()
    if code in (3, 5):
        # The password (or an md5 of it an attacker can crack offline) to whoever answers:
        # the TLS this check may have is not verified (no CA for the server is known here).
        raise _Fail(INSECURE, f"the server asks for {'cleartext' if code == 3 else 'md5'} "
                    "password authentication over a connection whose server is not verified: "
                    "the password is not sent (SCRAM-SHA-256 proves it without giving it away)")
    if code == 10:
        if b"SCRAM-SHA-256" not in data.split(b"\0"):
            raise _Fail("auth", f"no supported SASL mechanism in {data.rstrip(bytes(1))!r}")
        scram = _Scram(pw)
        _pg_send(wire, b"p", scram.first())
    elif code == 11 and scram:
        _pg_send(wire, b"p", scram.final(wire, data))
    elif code == 12 and scram:
        scram.check(wire, data)
    else:
        raise _Fail("auth", f"the server asks for an authentication this check does not "
                            f"implement (AuthenticationRequest {code})")
    return scram


def _postgresql(wire: _Wire, user: str, password: str, database: str) -> str:
    wire.write(struct.pack("!II", 8, 80877103))  # SSLRequest
    answer = wire.read(1)
    if answer == b"S":
        wire.starttls()
    elif answer != b"N":
        raise _bad(wire, f"{answer!r} to SSLRequest, not a PostgreSQL server")
    params = b"".join(k + b"\0" + v.encode() + b"\0" for k, v in (
        (b"user", user), (b"database", database), (b"application_name", "railsfab check")))
    wire.write(struct.pack("!II", len(params) + 9, 196608) + params + b"\0")
    version, scram = "", None
    while True:
        kind, body = _pg_read(wire)
        if kind == b"R":
            scram = _pg_auth(wire, body, password, scram)
        elif kind == b"E":
            raise _pg_error(wire, body)
        elif kind == b"S" and body.startswith(b"server_version\0"):
            version = body.split(b"\0")[1].decode("utf-8", "replace")
        elif kind == b"Z":
            wire.goodbye(b"X\0\0\0\x04")  # Terminate
            return version
        elif kind not in b"SKNv":  # ParameterStatus, BackendKeyData, Notice, NegotiateProtocol
            raise _bad(wire, f"message {kind!r}")


_ADAPTERS = {"mysql2": _mysql, "trilogy": _mysql, "mysql": _mysql,
             "postgresql": _postgresql, "postgis": _postgresql}


def login(adapter: str, host: str, port: int, user: str, password: str, database: str,
          timeout: float = 3.0, after=None) -> dict:
    """Log in as the app would: {"ok": True, "server": version, "ms": elapsed, "answer":
    after's} or {"ok": False, "stage": "connect" | "handshake" | "auth" | "database" |
    "insecure" (not tried: the password would have gone to whoever answers), "error":
    the server's (or the OS's) message, "code": MySQL errno, PostgreSQL SQLSTATE or ""}."""
    start, wire = time.monotonic(), None
    try:
        run = _ADAPTERS.get(adapter)
        if run is None:
            raise _Fail("connect", f"unknown adapter {adapter!r} (mysql2 or postgresql)")
        timeout = float(timeout)
        try:
            sock = socket.create_connection((host, int(port)), timeout=timeout)
        except OSError as e:
            reason = "timed out" if isinstance(e, _TIMEOUTS) else str(e) or type(e).__name__
            raise _Fail("connect", f"{host}:{port}: {reason}") from None
        wire = _Wire(sock, start + timeout, timeout, after)
        server = run(wire, user, password, database)
        return {"ok": True, "server": server, "ms": round((time.monotonic() - start) * 1000),
                **({"answer": wire.answer} if after else {})}
    except _Fail as f:
        return {"ok": False, "stage": f.stage, "error": f.error, "code": f.code}
    except Exception as e:  # garbage the parsers tripped on (or bad parameters): never raise
        what = "unexpected reply from the server" if wire else "cannot try"
        return {"ok": False, "stage": wire.stage if wire else "connect",
                "error": f"{what} ({type(e).__name__}: {e})", "code": ""}
    finally:
        if wire:
            wire.sock.close()
