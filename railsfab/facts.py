"""Everything deploy needs to know about a host, read in one SSH round trip.

A small Python program (python3 is on every Debian/Ubuntu EC2 image) runs as root and
prints one JSON document; the steps compare it with the wanted state and run only the
commands still needed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from railsfab import remote
from railsfab.lock import TAKE_LOCK
from railsfab.paths import Paths

PROBE_HEAD = r'''
import glob, grp, hashlib, json, os, pwd, stat, subprocess, time
P = json.loads(PARAMS)
'''

PROBE = r'''
def sha(path):
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None

def out(*argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""

def node(path):
    try:
        st = os.lstat(path)
    except OSError:
        return None
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return {"mode": "%04o" % stat.S_IMODE(st.st_mode), "owner": owner, "group": group,
            "link": os.readlink(path) if stat.S_ISLNK(st.st_mode) else None,
            "dir": stat.S_ISDIR(st.st_mode)}

osr = {}
for line in open("/etc/os-release"):
    k, _, v = line.strip().partition("=")
    osr[k] = v.strip('"')

installed = set()
for line in out("dpkg-query", "-W", "-f", "${Package} ${Status}\n", *P["packages"]).splitlines():
    parts = line.split()
    if parts[-3:] == ["install", "ok", "installed"]:
        installed.add(parts[0])

lists = [os.path.getmtime(p) for p in glob.glob("/var/lib/apt/lists/*_Packages*")]

releases = {}
for d in sorted(glob.glob(P["releases"] + "/*")):
    meta = {}
    try:
        with open(d + "/.railsfab-release.json") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        pass
    releases[os.path.basename(d)] = meta

current = None
try:
    current = os.path.basename(os.readlink(P["current"]))
except OSError:
    pass

pid = None
try:
    pid = int(open(P["pid"]).read().strip())
    os.kill(pid, 0)
except (OSError, ValueError):
    pid = None

def unit_state(name):
    return {"active": out("systemctl", "is-active", name),
            "enabled": out("systemctl", "is-enabled", name),
            "load": out("systemctl", "show", "-p", "LoadState", "--value", name),
            "main_pid": out("systemctl", "show", "-p", "MainPID", "--value", name)}

try:
    pwd.getpwnam(P["user"]); user = True
except KeyError:
    user = False

lock = take_lock(P["lock"]) if P.get("lock") else None

print(json.dumps({
    "lock": lock,
    "os": {"id": osr.get("ID"), "version": osr.get("VERSION_ID")},
    "installed": sorted(installed),
    "apt_lists_age": (time.time() - max(lists)) if lists else None,
    "user": user,
    "nodes": {p: node(p) for p in P["nodes"]},
    "files": {p: sha(p) for p in P["files"]},
    "releases": releases,
    "current": current,
    "server_pid": pid,
    "units": {u: unit_state(u) for u in P["units"]},
}))
'''


@dataclass
class Facts:
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def installed(self) -> set[str]:
        return set(self.raw["installed"])

    def node(self, path: str) -> dict | None:
        return self.raw["nodes"].get(path)

    def file_sha(self, path: str) -> str | None:
        return self.raw["files"].get(path)

    @property
    def releases(self) -> dict[str, dict]:
        return self.raw["releases"]

    @property
    def current(self) -> str | None:
        return self.raw["current"]

    @property
    def current_meta(self) -> dict:
        return self.releases.get(self.current or "", {})

    def unit(self, name: str) -> dict[str, str]:
        return self.raw["units"][name]


def gather(conn, paths: Paths, *, packages: list[str], user: str, nodes: list[str],
           files: list[str], units: list[str], lock_holder: dict | None = None) -> Facts:
    """Read the host; with `lock_holder`, also take the deploy lock in the same round trip."""
    params = {"packages": packages, "user": user, "nodes": nodes, "files": files,
              "units": units, "releases": paths.releases, "current": paths.current,
              "pid": paths.pid,
              "lock": {"path": paths.lock, "holder": lock_holder} if lock_holder else None}
    script = f"PARAMS = {json.dumps(json.dumps(params))}\n{PROBE_HEAD}{TAKE_LOCK}{PROBE}"
    r = remote.sh(conn, "sudo -n python3 -", step="facts", stdin=script.encode())
    return Facts(json.loads(r.stdout))
