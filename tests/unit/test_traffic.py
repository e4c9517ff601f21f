"""A canary is judged by its nginx access log against the other hosts': the on-host reader
(run here with python3 on temp logs, as it is shipped) and the judge's rules."""

from __future__ import annotations

import io
import os
import subprocess
import time

from rich.console import Console

from railsfab import onhost, remote, traffic
from railsfab.errors import RailsfabError
from railsfab.inventory_parts import Rollout
from railsfab.paths import Paths
from railsfab.report import Reporter
from railsfab.traffic import Failure, Traffic, judge, parsed

ROLLOUT = Rollout(max_5xx=0.01, latency_factor=3.0)


def line(ts: float, *, addr: str = "203.0.113.9", request: str = "GET / HTTP/1.1",
         status: int = 200, urt: str = "0.012") -> str:
    """A line as templates/nginx-site.conf.j2's log_format writes it."""
    return (f'{addr} - - [06/Dec/2026:12:00:00 +0000] "{request}" {status} 512 "-" '
            f'"Mozilla/5.0 (X11)" rt=0.013 urt="{urt}" ts={ts:.3f}')


def run_reader(path, window: float = 60, **extra) -> dict:
    """The reader as railsfab sends it: its text and one call, to `python3 -`."""
    program = onhost.python_call("access_log.py", "main",
                                 {"path": str(path), "window": window, **extra})
    out = subprocess.run(["python3", "-"], input=program, capture_output=True, check=True)
    return out.stdout.decode()


def write(path, lines: list[str]) -> None:
    path.write_bytes(b"".join(x.encode() + b"\n" for x in lines))


def test_the_reader_counts_the_windows_client_requests_and_nothing_else(tmp_path):
    now = time.time()
    log = tmp_path / "shop.access.log"
    write(log, [
        line(now - 600, status=500),  # before the window
        line(now - 5), line(now - 4, urt="0.030"), line(now - 3, request="GET /a HTTP/1.1"),
        line(now - 3, request="GET /assets/app.css HTTP/1.1", status=304, urt="-"),
        line(now - 2, addr="127.0.0.1", status=503), line(now - 2, addr="::1"),  # our checks
        line(now - 1, request="POST /orders HTTP/1.1", status=502, urt="0.050, 0.020"),
        "", "garbage", "\x00\xff binary", line(now - 1)[:40],
        line(now - 1).replace(' "GET', ' "GET " 200 1 "-" "-" rt=0.1 urt="9" ts=1'),
    ])
    t = parsed("web1", run_reader(log))
    assert not t.unread and not t.partial
    assert (t.requests, t.errors, t.local, t.junk) == (5, 1, 2, 5)
    assert t.classes == {"2xx": 3, "3xx": 1, "5xx": 1}
    # "-" (nginx answered itself) is no timing; two tries are summed: 0.07 s
    assert t.timings == {12: 2, 30: 1, 70: 1} and t.p50 == 0.012 and t.p95 == 0.07
    assert t.failing == (Failure(t.failing[0].ts, 502, "POST /orders HTTP/1.1", 0.07),)


def test_the_rotated_log_is_read_only_when_the_window_starts_before_the_log(tmp_path):
    now = time.time()
    log = tmp_path / "shop.access.log"
    write(log, [line(now - 2)])  # logrotate ran 3 s ago
    write(tmp_path / "shop.access.log.1", [line(now - 900), line(now - 5, status=500)])
    t = parsed("web1", run_reader(log, window=10))
    assert (t.requests, t.errors) == (2, 1)
    write(log, [line(now - 20), line(now - 2)])  # the log reaches before the window
    assert parsed("web1", run_reader(log, window=10)).requests == 1


def test_the_read_is_bounded_and_says_when_the_bound_cut_the_window(tmp_path):
    now = time.time()
    log = tmp_path / "shop.access.log"
    write(log, [line(now - 30 + i / 100) for i in range(1000)])
    t = parsed("web1", run_reader(log, window=60, budget=10_000))
    assert t.partial and 0 < t.requests < 100 and t.junk == 0  # the cut line is not junk
    assert not parsed("web1", run_reader(log, window=10, budget=10_000)).partial


def test_a_missing_log_or_a_link_is_unread_naming_the_path(tmp_path):
    t = parsed("web1", run_reader(tmp_path / "none.log"))
    assert t.unread == f"{tmp_path}/none.log: No such file or directory"
    os.symlink("/etc/passwd", tmp_path / "link.log")
    assert parsed("web1", run_reader(tmp_path / "link.log")).unread.endswith(
        "Too many levels of symbolic links")


def test_a_hostile_request_line_reaches_the_terminal_shown_not_obeyed(tmp_path):
    hostile = "GET /\x1b]52;c;ZWNobw==\x07[bold red]x[/]\x1b[2K\u202e HTTP/1.1"
    log = tmp_path / "shop.access.log"
    write(log, [line(time.time() - 1, request=hostile, status=500)])
    t = parsed("web1", run_reader(log))
    request = t.failing[0].request
    assert request.isascii() and request.isprintable() and "\\x1b]52" in request
    j = judge(t, [], ROLLOUT)
    assert not j.ok and any("[bold red]x[/]" in e for e in j.evidence)
    out = io.StringIO()
    rep = Reporter(Console(file=out, width=300, highlight=False, force_terminal=False),
                   live=False)
    rep.failure(RailsfabError("\n".join(j.evidence), host="web1", step="canary"), "fab deploy")
    assert "[bold red]x[/]" in out.getvalue() and "\x1b" not in out.getvalue()


def test_an_answer_of_another_shape_is_unread_not_trusted():
    good = ('{"window": 10, "requests": 1, "errors": 0, "classes": {"2xx": 1}, '
            '"urt_ms": {"5": 1}, "failing": [], "local": 0, "junk": 0, "partial": false}')
    assert parsed("web1", good).requests == 1
    for bad in (good.replace('"requests": 1', '"requests": -1'),
                good.replace('"requests": 1', '"requests": true'),
                good.replace('"2xx"', '"2xx; rm"'), "[]", "not json\x1b[2K"):
        t = parsed("web1", bad)
        assert t.unread and t.requests == 0 and "\x1b" not in t.unread


def test_a_host_that_does_not_answer_is_unread_not_an_exception(monkeypatch):
    def fails(*a, **k):
        raise RailsfabError("`sudo -n python3 -` did not finish in 60 s")
    monkeypatch.setattr(remote, "sh", fails)
    conn = type("Conn", (), {"host": "10.0.0.7"})()
    t = traffic.read(conn, Paths("shop", "/srv/shop"), 10)
    assert t.host == "10.0.0.7" and "did not finish" in t.unread
    monkeypatch.setattr(remote, "sh", lambda *a, **k: remote.Result(1, "", "sudo: a password"))
    t = traffic.read_all([conn], Paths("shop", "/srv/shop"), 10)[0]
    assert t.unread == "the log reader exited 1: sudo: a password"


def host(name: str, requests: int, errors: int = 0, *, ms: int = 20, timed: int | None = None,
         failing: tuple[Failure, ...] = ()) -> Traffic:
    timed = requests if timed is None else timed
    return Traffic(name, requests=requests, errors=errors, timings={ms: timed} if timed else {},
                   failing=failing, window=30)


def test_a_500_on_one_path_only_at_the_canary_stops_it_quoting_the_request():
    orders = Failure(1_765_022_400.5, 500, "GET /orders/7 HTTP/1.1", 0.031)
    j = judge(host("web1", 400, 12, failing=(orders,) * 3), [host("web2", 2000)], ROLLOUT)
    assert not j.ok
    assert j.said == ("web1: 400 requests, 12 5xx, p95 0.020 s; "
                      "others: 2,000 requests, 0 5xx, p95 0.020 s")
    assert j.evidence[0] == ("web1: 12 of 400 requests answered 5xx (3.0%, rollout.max_5xx "
                             "1.0%); the others 0 of 2,000 (0.0%)")
    assert '  500 at 12:00:00 UTC: "GET /orders/7 HTTP/1.1" (upstream 0.031 s)' in j.evidence


def test_errors_every_host_makes_are_not_the_canarys():
    assert judge(host("web1", 500, 10), [host("web2", 1000, 20)], ROLLOUT).ok
    assert judge(host("web1", 500, 10), [host("web2", 1000, 40)], ROLLOUT).ok
    assert judge(host("web1", 500, 5), [], ROLLOUT).ok  # at the threshold


def test_without_other_traffic_the_threshold_alone_decides():
    j = judge(host("web1", 100, 5), [host("web2", 0), Traffic("web3", unread="x")], ROLLOUT)
    assert not j.ok and j.evidence[0].endswith("no other host had requests to compare")
    assert "others: none with requests (web3 not read)" in j.said


def test_a_slow_canary_stops_only_past_the_factor_the_floor_and_enough_requests():
    others = [host("web2", 100, ms=20), host("web3", 100, ms=40)]
    j = judge(host("web1", 30, ms=500), others, ROLLOUT)
    assert not j.ok and j.evidence == [
        "web1: p95 upstream time 0.500 s over 30 requests, over 3x the others' 0.040 s over 200"]
    assert judge(host("web1", 30, ms=100), others, ROLLOUT).ok  # 0.1 s: the noise floor
    assert judge(host("web1", 30, ms=110), others, ROLLOUT).ok  # under 3 x 0.040
    assert judge(host("web1", 19, ms=500), others, ROLLOUT).ok  # too few to tell
    assert judge(host("web1", 30, ms=500), [host("web2", 19, ms=20)], ROLLOUT).ok


def test_others_p95_is_that_of_all_their_requests():
    merged = traffic.combined([host("web2", 90, ms=10), host("web3", 10, ms=900)])
    assert merged.p95 == 0.9 and merged.p50 == 0.01 and merged.requests == 100


def test_no_requests_at_the_canary_is_nothing_to_compare():
    j = judge(Traffic("web1", local=3, window=30), [host("web2", 50, 50)], ROLLOUT)
    assert j.ok and j.said == ("web1: no requests reached it in 30 s (3 from the host "
                               "itself): nothing to compare")


def test_an_unread_canary_stops_the_rollout_an_unread_other_does_not():
    j = judge(Traffic("web1", unread="/var/log/nginx/shop.access.log: Permission denied"),
              [host("web2", 10)], ROLLOUT)
    assert not j.ok and "Permission denied" in j.evidence[0]
    j = judge(host("web1", 10), [host("web2", 10), Traffic("web3", unread="x")], ROLLOUT)
    assert j.ok and j.said.endswith("(web3 not read)")


def test_the_reader_quotes_each_kind_of_failing_request_once_with_its_count(tmp_path):
    now = time.time()
    log = tmp_path / "shop.access.log"
    write(log, [line(now - 3, request="GET /canary HTTP/1.1", status=500)] * 40
          + [line(now - 2, request="GET /other HTTP/1.1", status=502)])
    t = parsed("web1", run_reader(log))
    assert [(f.status, f.request, f.count) for f in t.failing] == [
        (500, "GET /canary HTTP/1.1", 40), (502, "GET /other HTTP/1.1", 1)]
    assert t.failing[0].said().startswith('500 x 40, first at ')
