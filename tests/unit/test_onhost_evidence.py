"""The probe's evidence (railsfab/onhost/check_sys.py, check_app.py) from the inputs it
reads: command output, journal entries, log lines, files and permissions in a temporary
tree, and a real connect over a unix socket."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from railsfab.onhost import check_app, check_sys

SS = """\
tcp LISTEN 0 511 0.0.0.0:80 0.0.0.0:* users:(("nginx",pid=7848,fd=5),("nginx",pid=7375,fd=5))
tcp   LISTEN 0 128    [::]:22    [::]:* users:(("sshd",pid=33,fd=4))
u_str LISTEN 0 1024 /srv/a/u.sock 27 * 0 users:(("ruby",pid=7782,fd=7),("ruby",pid=7777,fd=7))
u_str LISTEN 0 4096 /run/systemd/private 2609054 * 0 users:(("systemd",pid=1,fd=17))
"""


def test_who_listens_where_from_ss():
    found = check_sys.parse_ss(SS)
    assert found["tcp"] == {"80": [7848, 7375], "22": [33]}
    assert found["unix"]["/srv/a/u.sock"] == [7782, 7777]


def test_a_process_unit_from_its_cgroup_v1_and_v2():
    v1 = "9:name=systemd:/system.slice/sample-unicorn.service\n4:memory:/\n0::/\n"
    assert check_sys.unit_of(v1) == "sample-unicorn.service"
    assert check_sys.unit_of("0::/system.slice/nginx.service\n") == "nginx.service"
    assert check_sys.unit_of("0::/user.slice/user-1000.slice/session-3.scope\n") == \
        "session-3.scope"
    assert check_sys.unit_of("0::/\n") is None


def entry(t: float, msg: str, mid: str = "", ident: str = "systemd") -> dict:
    return {"__REALTIME_TIMESTAMP": str(int(t * 1e6)), "MESSAGE": msg, "MESSAGE_ID": mid,
            "SYSLOG_IDENTIFIER": ident, "_PID": "1"}


START, SCHEDULED = check_sys.STARTING, check_sys.RESTART_SCHEDULED


def test_the_last_start_and_the_start_its_automatic_restarts_followed():
    entries = [entry(100, "Starting", START), entry(101, "boom", ident="bundle"),
               entry(102, "Scheduled restart job", SCHEDULED), entry(104, "Starting", START),
               entry(105, "boom", ident="bundle")]
    assert check_sys.starts(entries) == (3, 0)
    # a start by hand ends the series: the restarts before it are not this run's
    by_hand = [entry(90, "Starting", START), entry(91, "Scheduled", SCHEDULED),
               entry(92, "Starting", START), entry(93, "Stopping"), *entries]
    assert check_sys.starts(by_hand) == (7, 4)
    assert check_sys.starts([entry(1, "hello")]) == (None, None)


def test_a_journal_line_and_a_message_that_is_not_utf8():
    line = check_sys.journal_line(entry(0, [104, 105, 255], ident="bundle"))
    assert line.endswith(" bundle[1]: hi\ufffd")


def test_systemctl_show_output():
    assert check_sys.parse_show("A=1\nB=x=y\n\nC=") == {"A": "1", "B": "x=y", "C": ""}


LOG = [
    "I, [2026-12-01T01:53:47.156891 #7777]  INFO -- : Refreshing Gem list",
    "I, [2026-12-01T01:53:49.004660 #7777]  INFO -- : master process ready",
    "I, [2026-12-01T01:54:15.254126 #7947]  INFO -- : Refreshing Gem list",
    "/usr/lib/x/application.rb:603:in `validate': Missing `secret_key_base` (ArgumentError)",
    "\tfrom /srv/a/releases/1/config/environment.rb:5:in `<top (required)>'",
]


def at(stamp: str) -> float:
    return time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S"))


def test_log_lines_since_a_start_keep_a_backtrace_with_its_line():
    start = at("2026-12-01T01:54:15")
    assert check_app.since_start(LOG, start + 60, start) == LOG[2:]
    assert check_app.since_start(LOG, start - 60, start) == []  # not written since
    assert check_app.since_start(LOG, None, None) == LOG


def test_the_first_error_line_prefers_the_most_telling_kind():
    assert check_app.first_error(LOG) == LOG[3]
    words = ["I, [x] INFO -- : ready", "something failed here", "E, [x] ERROR -- : bad"]
    assert check_app.first_error(words) == words[2]  # Logger's E level before mere words
    assert check_app.first_error(["Completed 500 Internal Server Error in 5ms"]) is None
    assert check_app.first_error(LOG[:3]) is None


def test_nginx_t_error_lines():
    m = check_app.NGINX_ERROR.search("2026/12/01 01:55:07 [emerg] 8040#8040: a duplicate "
                                     "default server for 0.0.0.0:80 in /etc/nginx/x:17")
    assert m.groups() == ("emerg", "a duplicate default server for 0.0.0.0:80",
                          "/etc/nginx/x", "17")


def test_the_same_line_in_other_enabled_files(tmp_path, monkeypatch):
    (tmp_path / "a").write_text("server {\n    listen 80 default_server;\n}\n")
    (tmp_path / "b").write_text("server {\n\tlisten 80 default_server;\n}\n")
    (tmp_path / "c").write_text("listen 81;\n")
    monkeypatch.setattr(check_app, "ENABLED", (str(tmp_path / "*"),))
    assert check_app.same_line("listen 80 default_server;", str(tmp_path / "a")) == [
        {"file": str(tmp_path / "b"), "line": 2}]
    assert check_app.line_text(str(tmp_path / "b"), 2) == "listen 80 default_server;"


@pytest.fixture
def tree():
    """A deploy_to nobody may write, and a shared dir everybody may (in /tmp: pytest's own
    temporary folders are root's alone)."""
    tmp_path = Path(tempfile.mkdtemp(prefix="railsfab-test-"))
    tmp_path.chmod(0o755)
    (tmp_path / "locked").mkdir(mode=0o700)
    (tmp_path / "open").mkdir()
    (tmp_path / "open").chmod(0o777)  # past the umask
    (tmp_path / "open/f.log").write_text("x")
    (tmp_path / "open/f.log").chmod(0o644)
    yield tmp_path
    shutil.rmtree(tmp_path)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="files of another owner need root")


@needs_root
def test_who_may_reach_a_path_names_the_first_directory_that_says_no(tree):
    assert check_sys.may(str(tree / "locked/x.log"), "root", "w") == {"ok": True}
    no = check_sys.may(str(tree / "locked/x.log"), "nobody", "w")
    assert (no["ok"], no["path"], no["lacks"], no["owner"]) == \
        (False, str(tree / "locked"), "x", "root")
    f = check_sys.may(str(tree / "open/f.log"), "nobody", "w")
    assert (f["path"], f["lacks"], f["mode"]) == (str(tree / "open/f.log"), "w", "0644")
    assert check_sys.may(str(tree / "open/new.log"), "nobody", "w") == {"ok": True}
    assert check_sys.may(str(tree / "open/f.log"), "nobody", "r") == {"ok": True}


@needs_root
def test_the_paths_an_error_names(tree):
    line = f"Permission denied @ rb_sysopen - {tree}/open/f.log (Errno::EACCES) /usr/lib/x.rb"
    found = check_app.named_paths(line, "nobody")
    assert [p["path"] for p in found] == [f"{tree}/open/f.log"]
    assert found[0]["read"] == {"ok": True} and found[0]["app_user"]["lacks"] == "w"


@needs_root
def test_release_state_current_ledger_and_shared_dirs(tree):
    rel = tree / "releases/20260101"
    (rel / "log").parent.mkdir(parents=True)
    (rel / ".railsfab-release.json").write_text(json.dumps({"id": "20260101", "state": "good"}))
    (tree / "shared/log").mkdir(parents=True, mode=0o755)
    (rel / "log").symlink_to(tree / "shared/log")
    (tree / "current").symlink_to(rel)
    P = {"current": str(tree / "current"), "releases": str(tree / "releases"),
         "shared": str(tree / "shared"), "app_user": "nobody", "linked_dirs": ["log"],
         "unit_file": str(tree / "none.service"), "app_writes": [str(tree / "shared/log/a")]}
    r = check_app.release_state(P)
    assert (r["exists"], r["ledger"]["state"], r["unit_file"]) == (True, "good", False)
    assert r["releases"] == [{"id": "20260101", "state": "good"}]
    log = r["linked"][0]
    assert (log["link"], log["app_user"]["lacks"]) == (str(tree / "shared/log"), "w")
    rel.rename(tree / "gone")
    assert check_app.release_state(P)["exists"] is False


def test_the_env_files_names_never_its_values(tmp_path):
    env = tmp_path / "x.env"
    env.write_text("# c=1\nSECRET_KEY_BASE='s3cret'\nA=1\n\nB\n")
    keys = check_app.env_keys(str(env))
    assert keys == ["A", "SECRET_KEY_BASE"] and "s3cret" not in json.dumps(keys)


def test_disk_mount_and_the_largest_files(tmp_path):
    (tmp_path / "big").write_bytes(b"x" * 5000)
    (tmp_path / "small").write_bytes(b"x")
    (tmp_path / "dir").mkdir()
    d = check_sys.disk(str(tmp_path))
    assert d["size"] >= d["avail"] > 0 and d["mount"]["point"].startswith("/")
    top = check_sys.biggest([str(tmp_path)])
    assert [f["path"] for f in top] == [str(tmp_path / "big"), str(tmp_path / "small")]


def test_the_log_lines_of_the_probes_own_request(tmp_path):
    log = tmp_path / "production.log"
    log.write_text("[old-root] Started GET /\n")
    offset = check_app.size(str(log))
    with log.open("a") as f:
        f.write("[rid-root] Started GET /\n[other] Started GET /\n[rid-root] Boom (X):\n")
    assert check_app.lines_of(str(log), offset, "rid") == ["[rid-root] Started GET /",
                                                           "[rid-root] Boom (X):"]


def serve(path: str, answer: bool) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.listen()

    def run():
        try:
            conn, _ = s.accept()
        except OSError:  # closed by the test without a connect (a denied one)
            return
        if answer:
            conn.recv(1024)
            conn.sendall(b"HTTP/1.1 200 OK\r\n\r\nok")
        time.sleep(2)
        conn.close()
    threading.Thread(target=run, daemon=True).start()
    return s


def test_a_connect_tells_an_answer_from_a_hang_from_nobody(tmp_path):
    ok, hung = str(tmp_path / "ok.sock"), str(tmp_path / "hung.sock")
    servers = [serve(ok, True), serve(hung, False)]
    try:
        said = check_sys.connect(f"unix:{ok}", "/up", None, 1.0, "rid")
        assert (said["result"], said["status"]) == ("answered", "HTTP/1.1 200 OK")
        assert check_sys.connect(f"unix:{hung}", "/up", None, 0.5, "rid")["result"] == \
            "no answer"
        assert check_sys.connect(f"unix:{tmp_path}/none.sock", "/up", None, 0.5,
                                 "rid")["result"] == "missing"
    finally:
        for s in servers:
            s.close()


@needs_root
@pytest.mark.skipif(not os.path.exists("/usr/bin/python3"), reason="a python nobody may run")
def test_a_connect_as_a_user_the_directory_keeps_out_is_denied(tree):
    path = str(tree / "locked/s.sock")
    server = serve(path, True)
    try:
        said = check_sys.connect(f"unix:{path}", "/up", "nobody", 1.0, "rid",
                                 python="/usr/bin/python3")
        assert (said["result"], said["as"]) == ("denied", "nobody")
    finally:
        server.close()
