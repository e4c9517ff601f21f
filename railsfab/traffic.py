"""What a canary host is judged by: the app's nginx access log over the bake, against the
other hosts' over the same window.

Each host reads its own log (railsfab/onhost/access_log.py: one round trip, the window on
the host's clock; all hosts at once, so the windows line up to the SSH latency). What comes
back passes through `parsed`, the one place its values are checked, and every string a
client could have written (the request line) is made printable ASCII there: `Judgement`'s
text is plain and safe for a terminal, not rich markup (Reporter's step details and failure
blocks escape it; escape it yourself for `Reporter.info`).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import paramiko

from railsfab import onhost, remote
from railsfab.errors import RailsfabError
from railsfab.onhost.access_log import percentile
from railsfab.text import printable

if TYPE_CHECKING:
    from railsfab.inventory_parts import Rollout
    from railsfab.paths import Paths

TIMEOUT = 60  # s: reading a few MiB of log
MIN_TIMED = 20  # upstream timings each side needs before their p95s mean anything
LATENCY_FLOOR = 0.1  # s: a canary p95 under this is never called slow, whatever the ratio
REQUEST_CHARS = 200  # of a quoted request line
CLASS = re.compile(r"[0-9]xx")


@dataclass(frozen=True)
class Failure:
    """A request the host answered with a 5xx, as nginx logged it (the request printable)."""

    ts: float  # when it ended, on the host's clock
    status: int
    request: str
    urt: float | None  # upstream seconds (the first time); None: nginx answered itself
    count: int = 1  # the times this request failed with this status over the window

    def said(self) -> str:
        at = time.strftime("%H:%M:%S", time.gmtime(self.ts))
        took = "nginx's own answer" if self.urt is None else f"upstream {self.urt:.3f} s"
        times = f" x {self.count:,}, first" if self.count > 1 else ""
        return f'{self.status}{times} at {at} UTC: "{self.request}" ({took})'


@dataclass(frozen=True)
class Traffic:
    """One host's client requests over the window (its own checks through 127.0.0.1 apart),
    or why its log could not be read (`unread`)."""

    host: str
    requests: int = 0
    errors: int = 0  # 5xx answers
    classes: dict[str, int] = field(default_factory=dict)  # "2xx": requests
    timings: dict[int, int] = field(default_factory=dict)  # upstream ms: requests
    failing: tuple[Failure, ...] = ()  # the first few 5xx
    local: int = 0  # requests from the host itself
    junk: int = 0  # lines not in the timed format
    window: float = 0.0
    partial: bool = False  # the read budget ended inside the window
    unread: str = ""

    @property
    def share(self) -> float:
        """The 5xx share of its requests (0 without any)."""
        return self.errors / self.requests if self.requests else 0.0

    @property
    def timed(self) -> int:
        """Requests the app answered (nginx logged an upstream time)."""
        return sum(self.timings.values())

    @property
    def p95(self) -> float | None:
        return percentile(self.timings, 0.95)

    @property
    def p50(self) -> float | None:
        return percentile(self.timings, 0.5)

    def summary(self) -> str:
        """"812 requests, 0 5xx, p95 0.021 s"."""
        p95 = self.p95
        timing = "no upstream times" if p95 is None else f"p95 {p95:.3f} s"
        return f"{self.requests:,} requests, {self.errors:,} 5xx, {timing}"


def combined(hosts: Iterable[Traffic], name: str = "others") -> Traffic:
    """Several hosts as one: counts added, upstream times merged (so the p95 is that of
    all their requests, not an average of p95s)."""
    classes: dict[str, int] = {}
    timings: dict[int, int] = {}
    requests = errors = 0
    for t in hosts:
        requests, errors = requests + t.requests, errors + t.errors
        for key, n in t.classes.items():
            classes[key] = classes.get(key, 0) + n
        for ms, n in t.timings.items():
            timings[ms] = timings.get(ms, 0) + n
    return Traffic(name, requests=requests, errors=errors, classes=classes, timings=timings)


@dataclass(frozen=True)
class Judgement:
    """Whether the canary may stay; `said` is the one progress line, `evidence` (when not
    ok) the counts and the failing requests. Plain printable text, not markup."""

    ok: bool
    said: str
    evidence: list[str] = field(default_factory=list)


def judge(canary: Traffic, others: list[Traffic], rollout: Rollout) -> Judgement:
    """Stop when the canary answers more 5xx than rollout.max_5xx allows and more than the
    others over the same window (an error every host makes is not the release's doing),
    or when its p95 upstream time is over rollout.latency_factor times theirs and over
    LATENCY_FLOOR. Without other hosts with requests, the 5xx threshold alone decides."""
    if canary.unread:
        return Judgement(False, f"{canary.host}: its access log was not read",
                         [f"{canary.host}: {canary.unread}",
                          "a canary is judged by its log: without it nothing says it is sound"])
    if not canary.requests:
        local = f" ({canary.local:,} from the host itself)" if canary.local else ""
        return Judgement(True, f"{canary.host}: no requests reached it in "
                               f"{canary.window:.0f} s{local}: nothing to compare")
    peers = [t for t in others if not t.unread and t.requests]
    rest = combined(peers) if peers else None
    said = f"{canary.host}: {canary.summary()}; others: " + (
        rest.summary() if rest else "none with requests")
    unread = [t.host for t in others if t.unread]
    if unread:
        said += f" ({', '.join(unread)} not read)"
    evidence = _errors(canary, rest, rollout) + _latency(canary, rest, rollout)
    if not evidence:
        return Judgement(True, said)
    if canary.failing:
        evidence.append(f"failing requests at {canary.host} (the first kinds):")
        evidence += [f"  {f.said()}" for f in canary.failing]
    return Judgement(False, said, evidence)


def _errors(canary: Traffic, rest: Traffic | None, rollout: Rollout) -> list[str]:
    if canary.share <= rollout.max_5xx or (rest is not None and canary.share <= rest.share):
        return []
    mine = (f"{canary.host}: {canary.errors:,} of {canary.requests:,} requests answered 5xx "
            f"({canary.share:.1%}, rollout.max_5xx {rollout.max_5xx:.1%})")
    if rest is None:
        return [mine + "; no other host had requests to compare"]
    return [mine + f"; the others {rest.errors:,} of {rest.requests:,} ({rest.share:.1%})"]


def _latency(canary: Traffic, rest: Traffic | None, rollout: Rollout) -> list[str]:
    if rest is None or min(canary.timed, rest.timed) < MIN_TIMED:
        return []
    mine, theirs = canary.p95, rest.p95
    if mine is None or theirs is None:  # pragma: no cover (timed > 0)
        return []
    if mine <= LATENCY_FLOOR or mine <= rollout.latency_factor * theirs:
        return []
    return [f"{canary.host}: p95 upstream time {mine:.3f} s over {canary.timed:,} requests, "
            f"over {rollout.latency_factor:g}x the others' {theirs:.3f} s over {rest.timed:,}"]


def read(conn, paths: Paths, seconds: float, *, step: str = "traffic") -> Traffic:
    """The host's requests over the last `seconds` (its clock), in one round trip. A log
    that is missing or unreadable, or a host that does not answer, gives a Traffic that
    says so (`unread`), not an exception: an other host's gap must not stop a rollout
    (`judge` stops it when it is the canary's)."""
    host = getattr(getattr(conn, "railsfab_host", None), "name", None) or str(conn.host)
    stdin = onhost.python_call("access_log.py", "main",
                               {"path": paths.nginx_access_log, "window": seconds})
    try:
        r = remote.sh(conn, "sudo -n python3 -", step=step, stdin=stdin, warn=True,
                      timeout=TIMEOUT)
    except RailsfabError as exc:
        return Traffic(host, window=seconds, unread=printable(exc.message))
    except (paramiko.SSHException, OSError, EOFError) as exc:
        return Traffic(host, window=seconds, unread=f"SSH failed: {printable(str(exc))}")
    if r.exited != 0:
        said = (r.stderr.strip() or r.stdout.strip()).splitlines()[-1:]
        return Traffic(host, window=seconds, unread=f"the log reader exited {r.exited}"
                       + (f": {printable(said[0])}" if said else ""))
    return parsed(host, r.stdout)


def read_all(conns: Iterable, paths: Paths, seconds: float, *,
             step: str = "traffic") -> list[Traffic]:
    """`read` on every connection at once (their windows then end together), in order."""
    conns = list(conns)
    if not conns:
        return []
    with ThreadPoolExecutor(max_workers=len(conns)) as pool:
        return list(pool.map(lambda c: read(c, paths, seconds, step=step), conns))


def parsed(host: str, text: str) -> Traffic:
    """The reader's JSON as a Traffic, every value checked (counts are counts, the request
    line printable ASCII of bounded length); an answer of another shape is `unread`."""
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        window = _number(data["window"])
        if "error" in data:
            return Traffic(host, window=window, unread=f"{_text(data['path'], 100)}: "
                                                       f"{_text(data['error'], 100)}")
        return Traffic(
            host, requests=_count(data["requests"]), errors=_count(data["errors"]),
            classes={_class(k): _count(n) for k, n in data["classes"].items()},
            timings={_count(int(ms)): _count(n) for ms, n in data["urt_ms"].items()},
            failing=tuple(_failure(f) for f in data["failing"][:10]),
            local=_count(data["local"]), junk=_count(data["junk"]), window=window,
            partial=data["partial"] is True)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return Traffic(host, unread=f"the log reader's answer is not understood ({exc}): "
                                    f"{_text(text, 120)}")


def _failure(f: dict) -> Failure:
    urt = f["urt"]
    return Failure(ts=_number(f["ts"]), status=_count(f["status"]),
                   request=_text(f["request"], REQUEST_CHARS),
                   urt=None if urt is None else _number(urt),
                   count=max(1, _count(f.get("count", 1))))


def _text(value: object, limit: int) -> str:
    """Printable ASCII, at most `limit` characters: anything else shown escaped (\\x1b)."""
    ascii_only = str(value).encode("ascii", "backslashreplace").decode("ascii")
    return printable(ascii_only, limit)


def _count(value: object) -> int:
    if type(value) is not int or value < 0:
        raise ValueError(f"not a count: {_text(value, 20)}")
    return value


def _number(value: object) -> float:
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"not a number: {_text(value, 20)}")
    return float(value)


def _class(key: str) -> str:
    if not CLASS.fullmatch(key):
        raise ValueError(f"not a status class: {_text(key, 20)}")
    return key
