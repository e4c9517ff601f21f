"""A caching HTTP proxy for apt on the sandbox gateway, in front of tinyproxy.

Each sandbox host keeps its own /var/cache/apt/archives, and so its own apt lock, as an EC2
instance does: the hosts of a stage install their packages at the same time. (A shared
archives folder bind-mounted into every host made apt's lock on it serialise them.) Their
apt asks this proxy, which keeps every .deb it passes in one pool shared by all sandboxes on
the machine, so a package is fetched from the mirror once per machine: a host asking for one
that another host (or another sandbox) is fetching waits for that download and is then
served from the pool. A package already in the older flat pool (apt's own file names, from
sandboxes that bind-mounted it) is linked from there instead of fetched again. Anything else
(package indexes, CONNECT) goes through to tinyproxy unchanged, which stays the hosts' only
way out, limited to the Debian mirror.

Started by `fab sandbox.up` (stdlib only, so it starts at once):
    python -m railsfab.sandbox.deb_cache ADDRESS PORT UPSTREAM_ADDRESS UPSTREAM_PORT POOL [SEED]
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import http.client
import os
import selectors
import socket
import sys
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHUNK = 1 << 16
HOP_BY_HOP = {"connection", "proxy-connection", "keep-alive", "proxy-authorization",
              "proxy-authenticate", "te", "trailer", "transfer-encoding", "upgrade"}
# Asking for part of a file is for the proxy's own download to decide; it fetches whole ones.
NOT_FOR_POOL = HOP_BY_HOP | {"range", "if-range", "if-modified-since", "if-none-match"}
UPSTREAM_TIMEOUT = 120  # apt's own Acquire::http::Timeout


def pool_path(pool: Path, url: str) -> Path | None:
    """Where the pool keeps the file of this URL (host/path), or None if it is not a .deb
    the pool keeps (or not a path that stays inside the pool)."""
    parts = urlsplit(url)
    segments = unquote(parts.path).split("/")[1:]
    if (parts.scheme != "http" or not parts.hostname or parts.query
            or not segments or not segments[-1].endswith(".deb")
            or any(s in ("", ".", "..") for s in segments)):
        return None
    return pool.joinpath(parts.hostname, *segments)


def seed_candidates(seed: Path, name: str) -> list[Path]:
    """The same package in apt's flat archive naming: NAME_VERSION_ARCH.deb, the version with
    its epoch ("1%3a") that URLs leave out."""
    fields = name[:-len(".deb")].split("_")
    if len(fields) != 3:
        return []
    pkg, ver, arch = (glob.escape(f) for f in fields)
    return [seed / name, *map(Path, glob.glob(str(seed / f"{pkg}_[0-9]*%3a{ver}_{arch}.deb")))]


class Pool:
    """The .deb files on disk, and who is fetching which one right now (this process's
    threads and other sandboxes' proxies, which share the pool)."""

    def __init__(self, root: Path, seed: Path | None) -> None:
        self.root = root
        self.seed = seed
        self.locks_dir = root / ".locks"
        self.incoming = root / ".incoming"
        for d in (self.locks_dir, self.incoming):
            d.mkdir(parents=True, exist_ok=True)
        self._guard = threading.Lock()
        self._locks: dict[Path, threading.Lock] = {}

    @contextmanager
    def exclusive(self, path: Path):
        with self._guard:
            lock = self._locks.setdefault(path, threading.Lock())
        digest = hashlib.sha1(str(path.relative_to(self.root)).encode()).hexdigest()
        with lock, open(self.locks_dir / digest, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    def link_from_seed(self, path: Path) -> bool:
        if self.seed is None:
            return False
        for old in seed_candidates(self.seed, path.name):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                os.link(old, path)
                return True
            except FileExistsError:
                return True
            except OSError:  # gone meanwhile, or another file system: fetch it
                continue
        return False

    def temp(self, path: Path) -> Path:
        return self.incoming / f"{path.name}.{os.getpid()}.{threading.get_ident()}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: apt sends its requests down one connection
    server: CacheServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        dest = pool_path(self.server.pool.root, self.path)
        if dest is None:
            self._pass_through()
        elif dest.is_file():
            self._send_file(dest, "HIT")
        else:
            self._fetch(dest)

    def do_CONNECT(self) -> None:  # noqa: N802
        """A tunnel (an https mirror): tinyproxy answers and decides; bytes go both ways."""
        up = socket.create_connection(self.server.upstream, timeout=UPSTREAM_TIMEOUT)
        up.sendall(f"CONNECT {self.path} HTTP/1.1\r\nHost: {self.path}\r\n\r\n".encode())
        self.close_connection = True
        self._note("TUNNEL", self.path)
        _splice(self.connection, up)

    def _upstream(self, headers: dict[str, str]) -> tuple[http.client.HTTPConnection,
                                                          http.client.HTTPResponse]:
        conn = http.client.HTTPConnection(*self.server.upstream, timeout=UPSTREAM_TIMEOUT)
        conn.request("GET", self.path, headers=headers)
        return conn, conn.getresponse()

    def _pass_through(self) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        conn, resp = self._upstream(headers)
        try:
            body = resp.read()
        finally:
            conn.close()
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in HOP_BY_HOP | {"content-length"}:
                self.send_header(k, v)
        if resp.status not in (204, 304) and resp.status >= 200:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self._note("PASS", f"{resp.status} {self.path} {len(body)}")

    def _fetch(self, dest: Path) -> None:
        pool = self.server.pool
        with pool.exclusive(dest):
            if dest.is_file():  # fetched by whoever held the lock before us
                return self._send_file(dest, "WAITED")
            if pool.link_from_seed(dest):
                return self._send_file(dest, "SEED")
            headers = {k: v for k, v in self.headers.items() if k.lower() not in NOT_FOR_POOL}
            conn, resp = self._upstream(headers)
            try:
                self._store(resp, dest)
            finally:
                conn.close()

    def _store(self, resp: http.client.HTTPResponse, dest: Path) -> None:
        """The mirror's answer to the client as it arrives, and into the pool if complete."""
        length = resp.getheader("Content-Length")
        ok = resp.status == 200 and length is not None and length.isdigit()
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in HOP_BY_HOP:
                self.send_header(k, v)
        if length is None:
            self.close_connection = True  # the end of the body is the end of the connection
        self.end_headers()
        tmp = self.server.pool.temp(dest)
        client_ok, got = True, 0
        with open(tmp, "wb") if ok else open(os.devnull, "wb") as out:
            while chunk := resp.read(CHUNK):
                got += len(chunk)
                out.write(chunk)
                if client_ok:
                    try:
                        self.wfile.write(chunk)
                    except OSError:  # the client went away: finish the pool's copy anyway
                        client_ok = False
        if ok and got == int(length):
            tmp.chmod(0o644)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, dest)
        else:
            tmp.unlink(missing_ok=True)
        self.close_connection |= not client_ok
        self._note("MISS", f"{resp.status} {self.path} {got}")

    def _send_file(self, path: Path, how: str) -> None:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.debian.binary-package")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            self.connection.sendfile(f)
        self._note(how, f"{self.path} {size}")

    def _note(self, how: str, what: str) -> None:
        sys.stderr.write(f"{how} {what}\n")

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        pass  # one line per request from _note instead


class CacheServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, listen: tuple[str, int], upstream: tuple[str, int], pool: Pool) -> None:
        super().__init__(listen, Handler)
        self.upstream = upstream
        self.pool = pool


def _splice(a: socket.socket, b: socket.socket) -> None:
    sel = selectors.DefaultSelector()
    sel.register(a, selectors.EVENT_READ, b)
    sel.register(b, selectors.EVENT_READ, a)
    try:
        while True:
            for key, _ in sel.select(timeout=UPSTREAM_TIMEOUT) or [(None, None)]:
                if key is None:
                    return
                data = key.fileobj.recv(CHUNK)
                if not data:
                    return
                key.data.sendall(data)
    except OSError:
        return
    finally:
        b.close()


def main(argv: list[str]) -> None:
    address, port, up_address, up_port, pool = argv[:5]
    seed = Path(argv[5]) if len(argv) > 5 else None
    server = CacheServer((address, int(port)), (up_address, int(up_port)),
                         Pool(Path(pool), seed))
    sys.stderr.write(f"deb cache on {address}:{port}, pool {pool}, "
                     f"upstream {up_address}:{up_port}\n")
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    sys.stderr.reconfigure(line_buffering=True)
    main(sys.argv[1:])
