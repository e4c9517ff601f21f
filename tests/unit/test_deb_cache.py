"""The sandbox's .deb cache: each package fetched from upstream once, however many hosts ask
at the same time; everything else passed through; the pool never holds a partial file.
(A fake upstream on 127.0.0.1 plays tinyproxy.)"""

from __future__ import annotations

import http.client
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from railsfab.sandbox.deb_cache import CacheServer, Pool, pool_path, seed_candidates

MIRROR = "http://deb.debian.org/debian"
DEB = f"{MIRROR}/pool/main/r/ruby3.1/ruby3.1_3.1.2-7_amd64.deb"


@pytest.mark.parametrize("url, where", [
    (DEB, "deb.debian.org/debian/pool/main/r/ruby3.1/ruby3.1_3.1.2-7_amd64.deb"),
    (f"{MIRROR}/pool/main/a/automake-1.16/automake_1%3a1.16.5-1.3_all.deb",
     "deb.debian.org/debian/pool/main/a/automake-1.16/automake_1:1.16.5-1.3_all.deb"),
    (f"{MIRROR}/dists/bookworm/InRelease", None),  # indexes change: never kept
    (f"{MIRROR}/pool/../../etc/passwd.deb", None),  # out of the pool
    (f"{MIRROR}/pool/main/x//x.deb", None),
    (f"{MIRROR}/pool/main/x/x.deb?y=1", None),
    ("/pool/main/x/x.deb", None),  # not a proxy request
    ("https://deb.debian.org/debian/pool/main/x/x_1_all.deb", None),
])
def test_pool_keeps_debs_by_host_and_path_only(tmp_path, url, where):
    got = pool_path(tmp_path, url)
    assert (got.relative_to(tmp_path).as_posix() if got else None) == where


def test_seed_finds_apt_named_files_with_or_without_an_epoch(tmp_path):
    for name in ("ruby3.1_3.1.2-7_amd64.deb", "automake_1%3a1.16.5-1.3_all.deb",
                 "automake_1%3a1.16.4-1_all.deb"):
        (tmp_path / name).write_text(name)
    assert seed_candidates(tmp_path, "ruby3.1_3.1.2-7_amd64.deb")[0].is_file()
    found = [p for p in seed_candidates(tmp_path, "automake_1.16.5-1.3_all.deb") if p.exists()]
    assert [p.name for p in found] == ["automake_1%3a1.16.5-1.3_all.deb"]
    assert seed_candidates(tmp_path, "not-a-package.deb") == []


class Upstream(BaseHTTPRequestHandler):
    """tinyproxy's part: answers proxy-form GETs, counting them; the body is the URL x 5000."""

    protocol_version = "HTTP/1.1"
    seen: list[str] = []
    gate = threading.Event()

    def do_GET(self):  # noqa: N802
        Upstream.seen.append(self.path)
        Upstream.gate.wait(5)  # hold the download, so concurrent clients overlap
        if self.path.endswith("missing.deb"):
            body, status = b"not found", 404
        else:
            body, status = self.path.encode() * 5000, 200
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@pytest.fixture
def cache(tmp_path):
    Upstream.seen = []
    Upstream.gate = threading.Event()
    up = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    seed = tmp_path / "seed"
    seed.mkdir()
    server = CacheServer(("127.0.0.1", 0), up.server_address, Pool(tmp_path / "pool", seed))
    for s in (up, server):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield server
    for s in (up, server):
        s.shutdown()
        s.server_close()


def get(server, url: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(*server.server_address, timeout=10)
    conn.request("GET", url)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, body


def test_hosts_asking_at_once_share_one_download(cache):
    with ThreadPoolExecutor(8) as pool:
        answers = [pool.submit(get, cache, DEB) for _ in range(8)]
        threading.Timer(0.3, Upstream.gate.set).start()
        results = [a.result() for a in answers]
    assert {status for status, _ in results} == {200}
    assert {body for _, body in results} == {DEB.encode() * 5000}
    assert Upstream.seen == [DEB]
    kept = pool_path(cache.pool.root, DEB)
    assert kept.read_bytes() == DEB.encode() * 5000
    assert get(cache, DEB)[1] == kept.read_bytes() and Upstream.seen == [DEB]
    assert list(cache.pool.incoming.iterdir()) == []


def test_indexes_pass_through_every_time_and_failures_are_not_kept(cache):
    Upstream.gate.set()
    index = f"{MIRROR}/dists/bookworm/InRelease"
    missing = f"{MIRROR}/pool/main/m/missing/missing.deb"
    assert get(cache, index)[0] == get(cache, index)[0] == 200
    assert get(cache, missing)[0] == get(cache, missing)[0] == 404
    assert Upstream.seen == [index, index, missing, missing]
    assert not pool_path(cache.pool.root, missing).exists()


def test_a_package_in_the_old_flat_pool_is_linked_not_fetched(cache):
    Upstream.gate.set()
    old = cache.pool.seed / "automake_1%3a1.16.5-1.3_all.deb"
    old.write_bytes(b"automake")
    url = f"{MIRROR}/pool/main/a/automake-1.16/automake_1.16.5-1.3_all.deb"
    assert get(cache, url) == (200, b"automake")
    assert Upstream.seen == []
    assert Path(pool_path(cache.pool.root, url)).stat().st_ino == old.stat().st_ino
