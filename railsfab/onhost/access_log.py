"""Read the app's nginx access log over the last WINDOW seconds and print one JSON object:
the evidence railsfab.traffic judges a canary host by, against the other hosts.

It runs as root on the host (`python3 -`, standard library only, nothing at import). The
window is measured on the host's own clock (`ts=$msec`, templates/nginx-site.conf.j2), so
controller and hosts need not agree on the time. Reading is bounded: at most BUDGET bytes
from the log's end, and from its rotated `.1` only when the window reaches back before the
log's first line (logrotate just ran); `partial` says the budget ran out inside the window.

Every line is written from what a client sent (the request line, the user agent): a line
that is not in the timed format is counted as junk, never fails the read. Requests from the
host itself (railsfab's verification and `fab check` ask nginx on 127.0.0.1) are not the
app's traffic: counted apart, as `local`.
"""

import json
import math
import os
import re
import stat
import time

BUDGET = 4 << 20  # bytes read at most, over the log and its .1
FAILING = 5  # failing requests quoted
LOCAL = ("127.0.0.1", "::1")
# combined format, then ` rt=... urt="..." ts=...`. nginx writes `"` inside a variable as
# \x22, so a quoted field never holds one and the first quote opens the request line.
TIMED = re.compile(
    r'(?P<addr>\S+) - [^"]*\[[^\]"]*\] "(?P<request>[^"]*)" (?P<status>\d{3}) \d+ '
    r'"[^"]*" "[^"]*" rt=\d+\.\d+ urt="(?P<urt>[^"]*)" ts=(?P<ts>\d{9,10}\.\d{3})')


def tail(path, budget):
    """The complete lines of `path`'s last `budget` bytes, whether they start at the file's
    first line, and the bytes read. Never through a link (/var/log/nginx is root's, but not
    its files)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(0, "not a regular file")
        size = f.seek(0, 2)
        start = max(0, size - budget)
        f.seek(start)
        data = f.read(budget)
    lines = data.decode("utf-8", "replace").splitlines()
    return (lines[1:] if start else lines), start == 0, len(data)


def parse(line):
    """(addr, request, status, upstream seconds or None, ts) of a timed line, else None."""
    m = TIMED.fullmatch(line)
    if not m:
        return None
    return (m["addr"], m["request"], m["status"], upstream_seconds(m["urt"]), float(m["ts"]))


def upstream_seconds(urt):
    """The time the client waited on the app: the sum of every upstream try ("0.012, 0.003"
    is a failed try then a retry; " : " an internal redirect to another upstream, e.g. an
    error page). None when nginx answered itself ("-": a static file, a redirect)."""
    tries = [float(t) for t in re.split(r"\s*[,:]\s*", urt.strip())
             if re.fullmatch(r"\d+(\.\d+)?", t)]
    return sum(tries) if tries else None


def percentile(hist, q):
    """The nearest-rank `q` quantile (0..1) of a histogram {milliseconds: count}, in
    seconds; None when it is empty. (railsfab.traffic merges hosts' histograms with it.)"""
    total = sum(hist.values())
    if not total:
        return None
    rank, seen = max(1, math.ceil(q * total - 1e-9)), 0
    for ms in sorted(hist):
        seen += hist[ms]
        if seen >= rank:
            return ms / 1000
    return None  # pragma: no cover


def entries(path, cutoff, budget):
    """The parsed lines at or after `cutoff` (from `path`, then its .1 if the window reaches
    before `path`'s first line), the junk count, and whether the budget cut the window."""
    lines, whole, read = tail(path, budget)
    parsed = [parse(line) for line in lines]
    firsts = [p[4] for p in parsed if p]
    if whole and (not firsts or firsts[0] > cutoff) and budget > read:
        try:
            older, whole, _ = tail(path + ".1", budget - read)
            parsed = [parse(line) for line in older] + parsed
        except OSError:  # never rotated yet
            pass
    oldest = min((p[4] for p in parsed if p), default=None)
    partial = not whole and oldest is not None and oldest > cutoff
    kept = [p for p in parsed if p and p[4] >= cutoff]
    return kept, sum(1 for p in parsed if p is None), partial


def summary(kept):
    """Counts, status classes, upstream times and the first failing requests of `kept`."""
    classes, hist, failing = {}, {}, []
    requests = local = errors = 0
    for addr, request, status, urt, ts in kept:
        if addr in LOCAL:
            local += 1
            continue
        requests += 1
        cls = status[0] + "xx"
        classes[cls] = classes.get(cls, 0) + 1
        if urt is not None:
            ms = round(urt * 1000)
            hist[ms] = hist.get(ms, 0) + 1
        if cls == "5xx":
            errors += 1
            # the first FAILING kinds of failing request (status and request line), each
            # with how many times it failed
            key = (int(status), request[:500])
            same = next((f for f in failing if (f["status"], f["request"]) == key), None)
            if same is not None:
                same["count"] += 1
            elif len(failing) < FAILING:
                failing.append({"ts": ts, "status": key[0], "request": key[1], "urt": urt,
                                "count": 1})
    return {"requests": requests, "local": local, "errors": errors, "classes": classes,
            "timed": sum(hist.values()), "p50": percentile(hist, 0.5),
            "p95": percentile(hist, 0.95), "urt_ms": hist, "failing": failing}


def main(P):
    now = time.time()
    window = float(P["window"])
    out = {"path": P["path"], "now": now, "window": window}
    try:
        kept, junk, partial = entries(P["path"], now - window, int(P.get("budget", BUDGET)))
    except OSError as exc:
        out["error"] = exc.strerror or str(exc)
        print(json.dumps(out))
        return
    out.update(summary(kept), junk=junk, partial=partial)
    print(json.dumps(out))
