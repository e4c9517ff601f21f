"""The gates' host-side scripts, run here against a local stand-in for the app (a unix
socket server for serving.sh, a TCP server on 127.0.0.1 for verify.sh): an error the app
itself answers ends the wait at once, with what the app logged; a server that is not up yet
is waited for."""

from __future__ import annotations

import http.server
import os
import socketserver
import subprocess
import threading
import time
from pathlib import Path

import pytest

from railsfab import onhost

USER = "root"
# The scripts read the app's log with runuser, as the app's user: that needs root (as on the
# hosts, and as CI runs).
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runuser needs root")


class Handler(http.server.BaseHTTPRequestHandler):
    codes: dict[str, int] = {}
    log: Path | None = None

    def do_GET(self):  # noqa: N802 - http.server's name
        code = self.codes.get(self.path, 200)
        if code >= 500 and self.log:
            rid = self.headers.get("X-Request-Id", "")
            with self.log.open("a") as f:
                f.write(f"I, [{rid}] Started GET \"{self.path}\"\n"
                        f"F, [{rid}] ActionView::Template::Error (boom in the layout):\n"
                        f"I, [{rid}] Completed {code} Internal Server Error in 3ms\n")
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def address_string(self):
        return "local"

    def log_message(self, *args):
        pass


class UnixHTTP(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class TCPHTTP(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def serve(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def verify_env(server, tmp_path: Path, app) -> dict[str, str]:
    return {"BASE": f"http://127.0.0.1:{server.server_address[1]}", "HEALTH": "/up",
            "PUBLIC": str(tmp_path), "PROTO": "", "TIMEOUT": "20", "LOG": str(app.log),
            "USER_": USER}


def run(script: str, env: dict[str, str], timeout: float = 30) -> tuple[int, str, float]:
    t0 = time.monotonic()
    r = subprocess.run(["sh", "-s"] if script == "verify.sh" else ["bash", "-s"],
                       input=onhost.load(script), capture_output=True, text=True,
                       env={"PATH": os.environ["PATH"], **env}, timeout=timeout)
    return r.returncode, r.stdout, time.monotonic() - t0


@pytest.fixture
def app(tmp_path):
    log = tmp_path / "production.log"
    log.write_text("")
    Handler.log = log
    Handler.codes = {}
    yield Handler
    Handler.codes = {}


def test_readiness_fails_at_once_when_the_app_answers_an_error(app, tmp_path):
    sock = tmp_path / "app.sock"
    server = serve(UnixHTTP(str(sock), Handler))
    app.codes = {"/up": 500}
    try:
        code, out, took = run("serving.sh", {
            "SOCKET": str(sock), "HEALTH": "/up", "PROTO": "", "TIMEOUT": "20",
            "UNIT": "railsfab-test-none", "LOG": str(tmp_path / "stderr.log"),
            "RAILS_LOG": str(app.log), "USER_": USER})
    finally:
        server.shutdown()
    assert code == 6, out
    assert took < 5  # not the 20 s deadline
    assert "answers-error /up 500" in out and "boom in the layout" in out


def test_readiness_waits_for_an_app_that_is_not_up_yet(app, tmp_path):
    sock = tmp_path / "app.sock"
    later = threading.Timer(1.0, lambda: serve(UnixHTTP(str(sock), Handler)))
    later.start()
    code, out, took = run("serving.sh", {
        "SOCKET": str(sock), "HEALTH": "/up", "PROTO": "", "TIMEOUT": "20",
        "UNIT": "railsfab-test-none", "LOG": str(tmp_path / "stderr.log"),
        "RAILS_LOG": str(app.log), "USER_": USER})
    assert code == 0 and out.startswith("ok 200"), out
    assert took >= 0.9


def test_verify_fails_at_once_on_the_apps_500_with_the_line_it_logged(app, tmp_path):
    server = serve(TCPHTTP(("127.0.0.1", 0), Handler))
    app.codes = {"/": 500}
    try:
        code, out, took = run("verify.sh", verify_env(server, tmp_path, app))
    finally:
        server.shutdown()
    assert took < 5, out
    lines = out.splitlines()
    assert lines[:2] == ["/up 200 ", "/ 500 "]
    assert lines[-1].startswith("error F, [railsfab-verify-")
    assert lines[-1].endswith("ActionView::Template::Error (boom in the layout):")


def test_verify_waits_while_nginx_has_no_upstream(app, tmp_path):
    server = serve(TCPHTTP(("127.0.0.1", 0), Handler))
    app.codes = {"/": 502, "/up": 502}
    threading.Timer(1.5, lambda: setattr(app, "codes", {})).start()
    try:
        code, out, took = run("verify.sh", verify_env(server, tmp_path, app))
    finally:
        server.shutdown()
    assert out.splitlines() == ["/up 200 ", "/ 200 "]
    assert 1.4 < took < 10
