"""`fab check`'s probe, the system's side: systemd units and their journal since their last
start, processes, who listens where, a connect as another user, who may reach a path, disk,
memory and OOM kills.

Runs on the host as part of one program (see onhost/check.py): standard library only,
nothing at import. Every function reads; none changes the host.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import stat
import subprocess
import sys
import time

UNIT_PROPS = ("LoadState", "ActiveState", "SubState", "Result", "NRestarts", "ExecMainCode",
              "ExecMainStatus", "MainPID", "InactiveExitTimestampMonotonic", "ControlGroup",
              "MemoryCurrent", "MemoryMax", "NeedDaemonReload", "DropInPaths",
              "ExecStartPre")
# ss -p's process list: users:(("nginx",pid=7848,fd=5),...)
SS_USER = re.compile(r'\("([^"]*)",pid=(\d+),fd=\d+\)')
# "Out of memory: Killed process 123 (ruby)", "Memory cgroup out of memory: ...", systemd's
# "killed by the OOM killer": what the kernel and systemd leave when memory ran out
OOM = re.compile(r"(?i)out of memory|oom[- ]kill|killed by the oom")


def out(*argv: str, timeout: float = 10) -> str:
    """A command's stdout, stripped; "" when it cannot run or takes over `timeout` s."""
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        return r.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def wall(monotonic_usec) -> float | None:
    """The wall-clock time of a systemd monotonic timestamp (µs); None when unset."""
    try:
        usec = int(monotonic_usec)
    except (TypeError, ValueError):
        return None
    return time.time() - (time.monotonic() - usec / 1e6) if usec > 0 else None


def parse_show(text: str) -> dict[str, str]:
    """`systemctl show -p A,B`'s KEY=value lines."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


# systemd's catalog ids: "<unit> has begun starting up" (a start, or an automatic restart),
# and "automatic restart of <unit> scheduled"
STARTING = "7d4958e842da4a758f6c1cdc7b36dcc5"
RESTART_SCHEDULED = "5eb03494b6584870a536b337290809b3"


def unit_state(name: str) -> tuple[dict, list[str]]:
    """A unit's state, why it last ended (Result, exit status), its restarts, since when it
    runs (`since`, wall-clock seconds; `series_since`: the start its automatic restarts
    followed), and its journal since `series_since`. A start is the journal's "starting"
    entry: while systemd waits to restart a unit that failed, its InactiveExitTimestamp
    already lies after the attempt that failed."""
    s = parse_show(out("systemctl", "show", "-p", ",".join(UNIT_PROPS), name))
    entries = unit_journal(name)
    last, first = starts(entries)
    fallback = wall(s.pop("InactiveExitTimestampMonotonic", None))
    s["since"] = stamp_of(entries, last) or fallback
    # the start that began the current run of automatic restarts: what made it restart
    # (an OOM kill, a crash) happened after it
    s["series_since"] = stamp_of(entries, first) or s["since"]
    tail = entries[first:] if first is not None else entries
    return s, [journal_line(e) for e in tail][-60:]


def unit_journal(name: str, n: int = 200) -> list[dict]:
    """The unit's last `n` journal entries (its own processes' and systemd's about it)."""
    text = out("journalctl", "-q", "--no-pager", "-u", name, "-n", str(n), "-o", "json",
               "--output-fields=MESSAGE,MESSAGE_ID,SYSLOG_IDENTIFIER,_PID")
    entries = []
    for line in text.splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries


def starts(entries: list[dict]) -> tuple[int | None, int | None]:
    """The index of the unit's last start, and of the start that began the automatic
    restarts that led to it (the same when it did not restart by itself)."""
    begun = [i for i, e in enumerate(entries) if e.get("MESSAGE_ID") == STARTING]
    if not begun:
        return None, None
    k = len(begun) - 1
    while k > 0 and any(e.get("MESSAGE_ID") == RESTART_SCHEDULED
                        for e in entries[begun[k - 1]:begun[k]]):
        k -= 1
    return begun[-1], begun[k]


def stamp_of(entries: list[dict], i: int | None) -> float | None:
    return int(entries[i]["__REALTIME_TIMESTAMP"]) / 1e6 if i is not None else None


def journal_line(e: dict) -> str:
    msg = e.get("MESSAGE", "")
    if isinstance(msg, list):  # journald's form of a message that is not UTF-8
        msg = bytes(msg).decode(errors="replace")
    t = int(e.get("__REALTIME_TIMESTAMP", 0)) / 1e6
    return (f"{time.strftime('%H:%M:%S', time.localtime(t))} "
            f"{e.get('SYSLOG_IDENTIFIER', '?')}[{e.get('_PID', '')}]: {msg}")


def parse_journal(text: str, since: float | None) -> list[str]:
    """`journalctl -o short-unix` lines at or after `since`, as "HH:MM:SS ident[pid]: msg"."""
    lines = []
    for line in text.splitlines():
        ts, _, rest = line.partition(" ")
        try:
            t = float(ts)
        except ValueError:
            continue
        if since is None or t >= since:
            lines.append(time.strftime("%H:%M:%S", time.localtime(t)) + " "
                         + rest.partition(" ")[2])  # without the host name
    return lines


def journal(since: float | None, *match: str, n: int = 40) -> list[str]:
    """The last `n` journal lines matching `match` (journalctl's FIELD=value or -u unit)
    since `since`."""
    argv = ["journalctl", "-q", "--no-pager", "-o", "short-unix", "-n", str(n), *match]
    if since:
        argv += ["--since", f"@{int(since)}"]
    return parse_journal(out(*argv), since)


def proc(pid) -> dict | None:
    """Process `pid`: its command line, user, state letter (R, S, D, T stopped, Z), parent,
    resident memory (KiB) and systemd unit; None when there is no such process."""
    try:
        pid = int(pid)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        status = read_text(f"/proc/{pid}/status") or ""
        rss = re.search(r"^VmRSS:\s+(\d+)", status, re.M)
        user = pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name
    except (OSError, ValueError, KeyError, IndexError):
        return None
    return {"pid": pid, "cmd": cmd[:200], "user": user, "state": fields[0],
            "ppid": int(fields[1]), "rss_kb": int(rss.group(1)) if rss else None,
            "unit": unit_of(read_text(f"/proc/{pid}/cgroup") or "")}


def read_text(path: str) -> str | None:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return None


def unit_of(cgroup: str) -> str | None:
    """The systemd unit (service or scope) a process's /proc/<pid>/cgroup puts it in."""
    for line in cgroup.splitlines():
        path = line.split(":", 2)[-1]
        units = [p for p in path.split("/") if p.endswith((".service", ".scope"))]
        if units:
            return units[-1]
    return None


def children(pid) -> list[int]:
    try:
        pid = int(pid)
        return [int(c) for c in out("ps", "--ppid", str(pid), "-o", "pid=").split()]
    except ValueError:
        return []


def parse_ss(text: str) -> dict[str, dict[str, list[int]]]:
    """`ss -Hlnpxt`: the pids listening on each TCP port and each unix socket path."""
    found: dict[str, dict[str, list[int]]] = {"tcp": {}, "unix": {}}
    for line in text.splitlines():
        f = line.split()
        if len(f) < 5 or f[0] not in ("tcp", "u_str"):
            continue
        pids = [int(p) for _, p in SS_USER.findall(line)]
        if f[0] == "tcp":
            found["tcp"].setdefault(f[4].rsplit(":", 1)[-1], []).extend(pids)
        else:
            found["unix"].setdefault(f[4], []).extend(pids)
    return found


def holders(pids: list[int]) -> list[dict]:
    """The processes behind a listening socket, without the children of another holder
    (nginx's workers under its master, the app server's workers under its master)."""
    procs = {p: proc(p) for p in sorted(set(pids))}
    return [i for p, i in procs.items() if i and i["ppid"] not in procs]


# A connect as another user, in a child process that is that user (its own groups): the
# answer's first line, or why there is none. argv: address, request bytes (latin-1), deadline.
CONNECT = r"""
import socket, sys, time
addr, request, deadline = sys.argv[1], sys.argv[2].encode("latin-1"), float(sys.argv[3])
kind, _, where = addr.partition(":")
t = time.monotonic()
def say(result, **kw):
    import json
    print(json.dumps(dict(result=result, ms=round((time.monotonic() - t) * 1000), **kw)))
    sys.exit()
s = socket.socket(socket.AF_UNIX if kind == "unix" else socket.AF_INET)
s.settimeout(deadline)
try:
    s.connect(where if kind == "unix" else (where.rsplit(":", 1)[0], int(where.rsplit(":", 1)[1])))
except PermissionError as e:
    say("denied", error=str(e))
except FileNotFoundError as e:
    say("missing", error=str(e))
except ConnectionRefusedError as e:
    say("refused", error=str(e))
except OSError as e:
    say("error", error=str(e))
try:
    s.sendall(request)
    data = s.recv(256)
except socket.timeout:
    say("no answer")
except OSError as e:
    say("error", error=str(e))
say("answered" if data else "closed", status=data.split(b"\r\n", 1)[0].decode("latin-1"))
"""


def connect(address: str, path: str, as_user: str | None, deadline: float,
            request_id: str, python: str = sys.executable, proto: str | None = None) -> dict:
    """GET `path` on `address` ("unix:/path.sock" or "tcp:127.0.0.1:3000") as `as_user`
    (with nginx's X-Forwarded-Proto `proto`):
    {"result": answered | denied | missing | refused | no answer | closed | error, ...}."""
    request = (f"GET {path} HTTP/1.0\r\nHost: localhost\r\nX-Request-Id: {request_id}\r\n"
               + (f"X-Forwarded-Proto: {proto}\r\n" if proto else "") + "\r\n")
    kw = {}
    if as_user:
        try:
            u = pwd.getpwnam(as_user)
        except KeyError:
            return {"result": "error", "error": f"no user {as_user}"}
        kw = {"user": u.pw_uid, "group": u.pw_gid,
              "extra_groups": os.getgrouplist(as_user, u.pw_gid)}
    try:
        r = subprocess.run([python, "-c", CONNECT, address, request, str(deadline)],
                           capture_output=True, text=True, timeout=deadline + 5, **kw)
        return {**json.loads(r.stdout), "as": as_user or "root"}
    except (OSError, ValueError, subprocess.TimeoutExpired) as e:
        return {"result": "error", "error": str(e)[:200], "as": as_user or "root"}


def node(path: str) -> dict | None:
    """Owner, group and mode of `path` (following links); None when it does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return {"owner": _name(pwd.getpwuid, st.st_uid), "group": _name(grp.getgrgid, st.st_gid),
            "mode": f"{stat.S_IMODE(st.st_mode):04o}", "dir": stat.S_ISDIR(st.st_mode)}


def _name(lookup, num: int) -> str:
    try:
        return lookup(num)[0]
    except KeyError:
        return str(num)


BITS = {"r": 4, "w": 2, "x": 1}


def may(path: str, user: str, want: str, *, link_ok: bool = True) -> dict:
    """May `user` reach `path` (x on every directory above it) and have `want` ("w", "wx",
    ...) on it? {"ok": True} or the first path that says no, with what it lacks and its
    owner, group and mode. A missing path needs `want` + x on its nearest directory. With
    `link_ok=False`, `path` itself being a link says no (with where it points): what the app
    writes in its own folder is never a link, and a fix must not go through one."""
    try:
        u = pwd.getpwnam(user)
    except KeyError:
        return {"ok": False, "path": path, "lacks": want, "error": f"no user {user}"}
    if not link_ok and os.path.islink(path):
        return {"ok": False, "path": path, "lacks": want, "user": user,
                "link": os.readlink(path)}
    if u.pw_uid == 0:
        return {"ok": True}
    groups = {_name(grp.getgrgid, g) for g in os.getgrouplist(user, u.pw_gid)}
    parts = os.path.abspath(path).split("/")[1:]
    for i in range(len(parts) + 1):
        p = "/" + "/".join(parts[:i])
        n = node(p)
        last = i == len(parts)
        if n is None:
            # missing: creating it needs w and x on the directory above
            return may(os.path.dirname(p), user, "wx") if last else {
                "ok": False, "path": p, "lacks": "exists", "missing": True}
        need = want if last else "x"
        mode = int(n["mode"], 8)
        shift = 6 if n["owner"] == user else 3 if n["group"] in groups else 0
        lacks = "".join(b for b in need if not (mode >> shift) & BITS[b])
        if lacks:
            return {"ok": False, "path": p, "lacks": lacks, "user": user,
                    "groups": sorted(groups), **n}
    return {"ok": True}


def disk(path: str) -> dict | None:
    """Free space and inodes of the file system `path` is on, and where it is mounted."""
    try:
        v = os.statvfs(path)
    except OSError:
        return None
    return {"path": path, "mount": mount_of(path), "size": v.f_blocks * v.f_frsize,
            "avail": v.f_bavail * v.f_frsize, "files": v.f_files, "favail": v.f_favail}


def mount_of(path: str) -> dict:
    """The mount point and file system type holding `path` (the longest matching mount)."""
    best = {"point": "/", "fstype": "?", "source": "?"}
    real = os.path.realpath(path)
    for line in (read_text("/proc/self/mounts") or "").splitlines():
        f = line.split()
        if len(f) < 3:
            continue
        point = f[1].replace("\\040", " ")
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best["point"]):
            best = {"point": point, "fstype": f[2], "source": f[0]}
    return best


def biggest(dirs: list[str], n: int = 3) -> list[dict]:
    """The largest files directly in `dirs` (where logs and temporary files grow)."""
    found = []
    for d in dirs:
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            try:
                if e.is_file(follow_symlinks=False):
                    st = e.stat(follow_symlinks=False)
                    found.append({"path": e.path, "size": st.st_size,
                                  "owner": _name(pwd.getpwuid, st.st_uid)})
            except OSError:
                continue
    return sorted(found, key=lambda f: -f["size"])[:n]


def memory() -> dict:
    """/proc/meminfo's totals, in KiB."""
    info = {}
    for line in (read_text("/proc/meminfo") or "").splitlines():
        k, _, v = line.partition(":")
        if k in ("MemTotal", "MemAvailable", "SwapTotal", "SwapFree"):
            info[k] = int(v.split()[0])
    return info


def cgroup_oom_kills(control_group: str) -> int | None:
    """OOM kills the kernel counted in the unit's cgroup (v2 memory.events, v1
    memory.oom_control); None when the host exposes neither."""
    for path in (f"/sys/fs/cgroup{control_group}/memory.events",
                 f"/sys/fs/cgroup/memory{control_group}/memory.oom_control"):
        m = re.search(r"^oom_kill (\d+)", read_text(path) or "", re.M)
        if m:
            return int(m.group(1))
    return None


def oom(unit: dict, unit_name: str) -> dict:
    """OOM kills since the app server started (before the automatic restarts an OOM kill
    may have caused): the kernel's lines in the journal, systemd's for the unit, the
    cgroup's counter."""
    since = unit.get("series_since") or unit.get("since") or time.time() - 600
    kernel = [line for line in journal(since, "SYSLOG_IDENTIFIER=kernel", n=200)
              if OOM.search(line)]
    own = [line for line in journal(since, "-u", unit_name, n=200) if OOM.search(line)
           and " systemd[1]: " in line]  # systemd's, not the app's own words about memory
    return {"since": since, "lines": (kernel + own)[-5:],
            "cgroup_kills": cgroup_oom_kills(unit.get("ControlGroup", "")),
            "result": unit.get("Result")}
