"""A bounded HTTP load generator for zero-downtime tests and bench/ (stdlib only).

N threads, each with its own keep-alive connection, request a path until told to stop or
until the time or request limit is reached. Every answer other than 200, every connection
error and every answer slower than TIMEOUT counts as failed, with one exception that every
HTTP client makes (RFC 9112 9.3.1; browsers, urllib3): when a server closes an idle
keep-alive connection just as the next request goes out (nginx does on a reload), the
request is sent again once on a new connection, and counted as `retried`, not failed.
Traffic goes only to the sandbox hosts given. With `in_service`, requests are spread the way
an ALB spreads them: each goes to one of the hosts its target group has in service at that
moment (tests/integration/alb.py reads that from the AWS endpoint), over a keep-alive
connection per host that is closed once the host is out of service (as the ALB closes its
connections to a target it has drained).
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Longer than any restart's pause (a puma hot restart holds requests in the socket's backlog
# while the app boots), shorter than nginx's proxy_read_timeout.
TIMEOUT = 30

# Requests slower than this are counted (`slow`), failed or not: a person notices them.
SLOW = 5

# A reused connection that fails like this got no answer at all: the server had closed it.
STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


@dataclass
class LoadResult:
    ok: int = 0
    failed: int = 0
    retried: int = 0  # closed without an answer (a read error to wrk), sent again
    slow: int = 0  # answered (or failed) after more than SLOW seconds
    slowest: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    bodies: list[str] = field(default_factory=list)

    def merge(self, other: LoadResult) -> None:
        self.ok += other.ok
        self.failed += other.failed
        self.retried += other.retried
        self.slow += other.slow
        self.slowest = max(self.slowest, other.slowest)
        for k, v in other.errors.items():
            self.errors[k] = self.errors.get(k, 0) + v


class Load:
    def __init__(self, addresses: list[str], *, path: str = "/", connections: int = 50,
                 max_seconds: float = 120, max_requests: int = 200_000,
                 marker: str | None = None,
                 in_service: Callable[[], list[str]] | None = None) -> None:
        self.addresses = addresses
        self.in_service = in_service  # the hosts an ALB would send the next request to
        self.path = path
        self.connections = connections
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self.marker = marker  # when set, remember when this text first appears in a body
        self.marker_seen_at: float | None = None
        self._stop = threading.Event()
        self._count = 0
        self._lock = threading.Lock()
        self._results: list[LoadResult] = []
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Load:
        self.started = time.monotonic()
        for i in range(self.connections):
            t = threading.Thread(target=self._worker, args=(self.addresses[i % len(
                self.addresses)],), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> LoadResult:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)
        total = LoadResult()
        for r in self._results:
            total.merge(r)
        self.result = total
        return total

    def _next(self) -> bool:
        with self._lock:
            self._count += 1
            return (self._count <= self.max_requests and not self._stop.is_set()
                    and time.monotonic() - self.started < self.max_seconds)

    def _worker(self, address: str) -> None:
        res = LoadResult()
        conns: dict[str, http.client.HTTPConnection] = {}
        turn = 0
        while self._next():
            if self.in_service is not None:
                live = self.in_service()
                if not live:  # the load balancer has no target: it answers 503 itself
                    res.failed += 1
                    res.errors["no target in service"] = res.errors.get(
                        "no target in service", 0) + 1
                    time.sleep(0.05)
                    continue
                for gone in [a for a in conns if a not in live]:
                    conns.pop(gone).close()  # the ALB closes what it drained
                turn += 1
                address = live[turn % len(live)]
            try:
                self._one(res, conns, address)
            except (OSError, http.client.HTTPException) as exc:
                res.failed += 1
                key = type(exc).__name__
                res.errors[key] = res.errors.get(key, 0) + 1
                conn = conns.pop(address, None)
                if conn is not None:
                    conn.close()
        for conn in conns.values():
            conn.close()
        with self._lock:
            self._results.append(res)

    def _one(self, res: LoadResult, conns: dict, address: str) -> None:
        t0 = time.monotonic()
        conn = conns.get(address)
        try:
            reused = conn is not None
            if conn is None:
                conn = conns[address] = http.client.HTTPConnection(address, 80, timeout=TIMEOUT)
            conn.request("GET", self.path)
            resp = conn.getresponse()
        except STALE:
            if not reused:
                raise
            res.retried += 1
            conn.close()
            conn = conns[address] = http.client.HTTPConnection(address, 80, timeout=TIMEOUT)
            conn.request("GET", self.path)
            resp = conn.getresponse()
        body = resp.read()
        took = time.monotonic() - t0
        res.slowest = max(res.slowest, took)
        res.slow += took > SLOW
        if resp.status == 200:
            res.ok += 1
            if self.marker and self.marker_seen_at is None and self.marker.encode() in body:
                self.marker_seen_at = time.monotonic()
        else:
            res.failed += 1
            key = f"HTTP {resp.status}"
            res.errors[key] = res.errors.get(key, 0) + 1
        if resp.getheader("Connection", "").lower() == "close":
            conn.close()
            conns.pop(address, None)
