"""`fab check`'s probe, the app's side: logs since the server's last start and their first
error line, the log lines of the probe's own requests, `nginx -t` with the lines it names,
and the release `current` points to (its ledger, the shared dirs linked into it).

Runs on the host as part of one program (see onhost/check.py): standard library only,
nothing at import.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import time

try:  # on the host, onhost/check_sys.py's and manifest.py's text come first in the program
    from railsfab.onhost.check_sys import may, node, read_text
    from railsfab.onhost.manifest import asset_manifest, open_plain
except ImportError:  # pragma: no cover
    pass

# a log line's own time: Ruby's Logger "[2026-12-01T01:54:23.22 #7958]", puma's
# "=== puma startup: 2026-12-01 01:54:23 +0000 ===", nginx's "2026/12/01 01:54:23"
STAMP = re.compile(r"(\d{4})[-/](\d\d)[-/](\d\d)[T ](\d\d):(\d\d):(\d\d)")
# an exception's class: ArgumentError, ActionView::Template::Error, Errno::EACCES (not the
# "Error" of "Internal Server Error")
EXCEPTION = re.compile(r"\b(?:[A-Z]\w*::)+\w*(?:Error|Exception|Invalid)\b|"
                       r"\b[A-Z]\w+(?:Error|Exception)\b|\bErrno::\w+")
# What an error looks like in any of these logs, most telling first: Ruby's uncaught
# exception "file:line:in `m': message (Class)", an exception class or errno, Logger's
# E/F levels, nginx's [emerg]/[error]..., then the words of failure.
ERRORS = (
    re.compile(r":\d+:in [`'][^']*': .*\([A-Z]\w*(?:::\w+)*\)\s*$"),
    EXCEPTION,
    re.compile(r"^[EF], \[|\[(?:emerg|alert|crit|error)\]"),
    re.compile(r"(?i)permission denied|no such file|no space left|address already in use|"
               r"\bcannot\b|can't|\bfailed\b|\bfatal\b|\bdenied\b|\brefused\b"),
)
# absolute paths named in an error (Errno's "@ rb_sysopen - /srv/...", nginx's "in /etc/..")
PATH = re.compile(r"(?<![\w.])(/(?:[\w.@+-]+/?)+)")


def tail_bytes(path: str, limit: int = 16384) -> tuple[list[str], float | None]:
    """The lines of a log's last `limit` bytes, and when it was last written."""
    try:
        with open_plain(path) as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - limit))
            data = f.read()
            mtime = os.fstat(f.fileno()).st_mtime
    except OSError:
        return [], None
    lines = data.decode(errors="replace").splitlines()
    return (lines[1:] if size > limit else lines), mtime


def stamp(line: str) -> float | None:
    m = STAMP.search(line[:60])
    if not m:
        return None
    try:
        return time.mktime(tuple(int(g) for g in m.groups()) + (0, 0, -1))
    except (OverflowError, ValueError):
        return None


def since_start(lines: list[str], mtime: float | None, start: float | None) -> list[str]:
    """The lines written since `start`: after the last line stamped before it (a backtrace
    has no stamps of its own: it stays with the line that logged it)."""
    if start is None:
        return lines
    if mtime is not None and mtime < start:
        return []
    cut = 0
    for i, line in enumerate(lines):
        t = stamp(line)
        if t is not None and t < int(start):
            cut = i + 1
    return lines[cut:]


def first_error(lines: list[str]) -> str | None:
    """The first line that reads as an error, by the most telling kind present."""
    for kind in ERRORS:
        for line in lines:
            if kind.search(line):
                return line.strip()[:300]
    return None


def named_paths(line: str, user: str) -> list[dict]:
    """The absolute paths an error line names, each with its owner, group and mode and
    whether `user` may read it and write it (or, when missing, create it)."""
    found = []
    for p in dict.fromkeys(PATH.findall(line)):
        p = p.rstrip(":/.") or "/"
        if len(found) == 3 or p.startswith(("/usr/", "/proc/")):
            continue
        found.append({"path": p, "node": node(p), "read": may(p, user, "r"),
                      "app_user": may(p, user, "w")})
    return found


def lines_of(path: str, offset: int, needle: str, limit: int = 1 << 20) -> list[str]:
    """Lines from byte `offset` on (what was written during the probe's requests) that
    contain `needle`."""
    try:
        with open_plain(path) as f:
            f.seek(0, 2)
            end = f.tell()
            f.seek(offset if 0 <= offset <= end else max(0, end - 65536))
            data = f.read(limit)
    except OSError:
        return []
    return [line[:400] for line in data.decode(errors="replace").splitlines()
            if needle in line][-40:]


def size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return -1


NGINX_ERROR = re.compile(r"\[(emerg|alert|crit|error)\] \d+#\d+: (.*?)(?: in (\S+):(\d+))?$")


def nginx_test() -> dict:
    """`nginx -t` of the config on disk: ok or not, and each error with the file and line
    it names, that line's text and where else the same line is enabled."""
    try:
        r = subprocess.run(["nginx", "-t"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"ok": False, "errors": [{"message": str(e)}], "output": ""}
    errors = []
    for line in r.stderr.splitlines():
        m = NGINX_ERROR.search(line)
        if not m:
            continue
        e = {"level": m.group(1), "message": m.group(2), "file": m.group(3),
             "line": int(m.group(4)) if m.group(4) else None}
        if e["file"]:
            e["text"] = line_text(e["file"], e["line"])
            e["real"] = os.path.realpath(e["file"])
            e["same"] = same_line(e["text"], e["file"])
        errors.append(e)
    return {"ok": r.returncode == 0, "errors": errors,
            "output": "\n".join(r.stderr.splitlines()[-3:])}


def line_text(path: str, number: int | None) -> str:
    try:
        with open(path, errors="replace") as f:
            for i, line in enumerate(f, 1):
                if i == number:
                    return line.strip()
    except OSError:
        pass
    return ""


ENABLED = ("/etc/nginx/sites-enabled/*", "/etc/nginx/conf.d/*.conf")


def same_line(text: str, but: str) -> list[dict]:
    """Other enabled config files with the same line (a directive given twice)."""
    if not text:
        return []
    found = []
    for path in sorted(p for g in ENABLED for p in glob.glob(g)):
        if os.path.realpath(path) == os.path.realpath(but):
            continue
        try:
            with open(path, errors="replace") as f:
                found += [{"file": path, "line": i} for i, line in enumerate(f, 1)
                          if line.strip() == text]
        except OSError:
            continue
    return found[:3]


def ledger(release_dir: str) -> dict:
    try:
        with open(os.path.join(release_dir, ".railsfab-release.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def release_state(P: dict) -> dict:
    """Where `current` points, whether that release exists and what its ledger says, the
    other releases, and each shared dir linked into it: its target and whether the app's
    user may write there."""
    link = readlink(P["current"])
    target = os.path.join(os.path.dirname(P["current"]), link) if link else None
    try:
        ids = sorted(os.listdir(P["releases"]))
    except OSError:
        ids = []
    user = P["app_user"]
    linked = []
    for name in P["linked_dirs"]:
        inside = f"{P['current']}/{name}"
        shared = f"{P['shared']}/{name}"
        linked.append({"name": name, "shared": shared, "link": readlink(inside),
                       "node": node(shared),
                       "app_user": may(shared, user, "wx", link_ok=False)})
    files = [{"path": p, "node": node(p), "app_user": may(p, user, "w", link_ok=False)}
             for p in P["app_writes"]]
    return {
        "link": link, "target": target,
        "exists": bool(target and os.path.isdir(target)),
        "ledger": ledger(target) if target else {},
        "releases": [{"id": i, "state": ledger(f"{P['releases']}/{i}").get("state")}
                     for i in ids[-10:]],
        "unit_file": os.path.exists(P["unit_file"]),
        "linked": linked, "files": files,
        "manifest": asset_manifest(P["current"], P["releases"]),
    }


# Rails found no template for the action: it answers 204 (or 406 to a browser) with no page
NO_TEMPLATE = re.compile(r"(?:No template found for |MissingExactTemplate \()"
                         r"([A-Z][\w:]*)Controller#(\w+)")


def template_access(P: dict, lines: list[str]) -> dict | None:
    """The views folder of the action the app logged no template for, as the app's user
    may list it, and the templates it holds for that action."""
    m = next((x for x in (NO_TEMPLATE.search(line) for line in lines) if x), None)
    if m is None:
        return None
    folder = "/".join(re.sub(r"(?<!^)(?=[A-Z])", "_", part).lower()
                      for part in m.group(1).split("::"))
    release = os.path.realpath(P["current"])
    views = os.path.join(release, "app", "views", folder)
    found = sorted(os.path.basename(f) for f in glob.glob(os.path.join(views, m.group(2) + ".*")))
    return {"controller": m.group(1), "action": m.group(2), "views": views,
            "access": may(views, P["app_user"], "rx"), "templates": found}


def readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def env_keys(path: str) -> list[str]:
    """The names (never the values) the env file sets."""
    try:
        with open(path) as f:
            return sorted({line.split("=", 1)[0].strip() for line in f
                           if "=" in line and not line.lstrip().startswith("#")})
    except OSError:
        return []


def nginx_user(conf: str = "/etc/nginx/nginx.conf") -> str:
    m = re.search(r"^\s*user\s+([^\s;]+)", read_text(conf) or "", re.M)
    return m.group(1) if m else "www-data"
