"""What deploy, rollback and restart need to know about a host, printed as one JSON document.

Runs as root; with a lock request it also takes the app's deploy lock in the same round
trip (mkdir is atomic: of several concurrent runs exactly one gets it).
"""

import glob
import grp
import hashlib
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import time

try:  # on the host, onhost/manifest.py's text comes first in the same program
    from railsfab.onhost.manifest import asset_manifest
except ImportError:  # pragma: no cover
    pass

# Files whose text comes back too (for dry-run diffs); never the env file (secrets).
MAX_TEXT = 65536


def sha(path):
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def text(path):
    try:
        if os.path.getsize(path) > MAX_TEXT:
            return None
        with open(path, errors="replace") as f:
            return f.read()
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
    return {"mode": f"{stat.S_IMODE(st.st_mode):04o}", "owner": owner, "group": group,
            "link": os.readlink(path) if stat.S_ISLNK(st.st_mode) else None,
            "dir": stat.S_ISDIR(st.st_mode)}


def os_release():
    osr = {}
    try:
        with open("/etc/os-release") as f:
            for line in f:
                k, _, v = line.strip().partition("=")
                osr[k] = v.strip('"')
    except OSError:
        pass
    return {"id": osr.get("ID"), "version": osr.get("VERSION_ID"),
            "codename": osr.get("VERSION_CODENAME")}


RUBY = "ruby[0-9]*.[0-9]*"  # Debian's interpreter packages: ruby3.1, ruby3.3 ...


def installed(packages):
    """{package: version} of those installed among `packages` (and the Ruby interpreter)."""
    found = {}
    listing = out("dpkg-query", "-W", "-f", "${Package} ${Version} ${Status}\n", RUBY,
                  *packages)
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[-3:] == ["install", "ok", "installed"]:
            found[parts[0]] = parts[1]
    return found


def ruby(found):
    """The host's Ruby: the installed interpreter, else the one `apt-get install ruby` would
    bring (so a Gemfile's ruby line is checked before anything is installed)."""
    for package, version in sorted(found.items()):
        if re.fullmatch(r"ruby\d+\.\d+", package):
            return {"version": upstream(version), "package": package, "installed": True}
    dep = re.search(r"Depends: (ruby\d+\.\d+)", out("apt-cache", "depends", "ruby"))
    if dep:
        show = out("apt-cache", "show", "--no-all-versions", dep.group(1))
        m = re.search(r"^Version: (\S+)", show, re.M)
        if m:
            return {"version": upstream(m.group(1)), "package": dep.group(1), "installed": False}
    return None


def upstream(debian_version):
    """3.1.2 from Debian's 3.1.2-7+deb12u1 (or 1:3.1.2-7)."""
    return re.sub(r"^\d+:", "", debian_version).split("-")[0].split("+")[0].split("~")[0]


def releases(folder):
    found = {}
    for d in sorted(glob.glob(folder + "/*")):
        meta = {}
        try:
            with open(d + "/.railsfab-release.json") as f:
                meta = json.load(f)
        except (OSError, ValueError):
            pass
        found[os.path.basename(d)] = meta
    return found


def unit_states(names):
    """ActiveState, UnitFileState, LoadState, MainPID and User of each unit, in one
    systemctl."""
    if not names:
        return {}
    show = out("systemctl", "show", "-p", "Id,ActiveState,UnitFileState,LoadState,MainPID,User",
               *names)
    blocks = [dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
              for block in show.split("\n\n")]
    states = {}
    for name, props in zip(names, blocks + [{}] * (len(names) - len(blocks)), strict=False):
        enabled = props.get("UnitFileState", "")
        if props.get("LoadState") == "masked":
            enabled = "masked"
        states[name] = {"active": props.get("ActiveState", ""), "enabled": enabled,
                        "load": props.get("LoadState", ""),
                        "main_pid": props.get("MainPID", ""), "user": props.get("User", "")}
    return states


def started(fields, uptime, now):
    """Wall-clock start of a process from its /proc stat fields (after the command name)."""
    return now - (uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))


def nginx_loaded(req, main_pid):
    """When the running nginx last read its config, and the mtime (lstat) of each config path
    asked for. A reload (or start) makes the master read the config, then start new workers:
    the newest process of the master's family started just after the config it serves was
    read. `loaded` is None when no nginx master runs."""
    mtimes = {}
    for path in req["paths"]:
        try:
            mtimes[path] = os.lstat(path).st_mtime
        except OSError:
            mtimes[path] = None
    pid = main_pid if main_pid not in ("", "0", None) else None
    if pid is None:
        try:
            with open(req["pid_file"]) as f:
                pid = f.read().strip()
        except OSError:
            return {"loaded": None, "mtimes": mtimes}
    with open("/proc/uptime") as f:
        uptime, now = float(f.read().split()[0]), time.time()
    newest = None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry == pid or fields[1] == pid:
            t = started(fields, uptime, now)
            newest = t if newest is None else max(newest, t)
    return {"loaded": newest, "mtimes": mtimes}


def _holder(path, wait=0.0):
    """Who holds the lock at `path`; `wait` seconds for it to reappear (another run may be
    taking it over at this very moment)."""
    end = time.monotonic() + wait
    while True:
        try:
            with open(path + "/holder.json") as f:
                return json.load(f)
        except (OSError, ValueError):
            if time.monotonic() >= end:
                return {"owner": "unknown (no holder file)"}
            time.sleep(0.02)


def _create(path, me):
    """The lock directory with its holder file inside, appearing at once (made aside, then
    renamed into place: never seen without its holder); False when the lock exists."""
    aside = tempfile.mkdtemp(prefix=".lock-", dir=os.path.dirname(path))
    with open(aside + "/holder.json", "w") as f:
        json.dump(me, f)
    try:
        os.rename(aside, path)
        return True
    except OSError:  # it exists (not empty)
        shutil.rmtree(aside, ignore_errors=True)
        return False


def take_lock(req):
    """Take the lock directory, or say who holds it. `steal_if` takes over a lock whose
    holder is exactly that (a dead run of ours), inside a takeover guard (`<lock>.takeover`,
    made with mkdir: one taker at a time): the holder is read again there, the dead lock
    removed, and the new one made with the same atomic create as any run's. No lock is ever
    moved away while a live run might hold it, so of any number of runs (taking it over or
    taking it fresh) exactly one holds it."""
    path, me = req["path"], req["holder"]
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    if _create(path, me):
        return {"acquired": True}
    held = _holder(path, wait=2.0)
    if req.get("steal_if") is None or held != req["steal_if"]:
        return {"acquired": False, "holder": held}
    guard = path + ".takeover"
    _clear_stale_guard(guard)
    try:
        os.mkdir(guard, 0o700)
    except OSError:  # another run is taking it over now
        return {"acquired": False, "holder": _holder(path, wait=2.0)}
    try:
        if _holder(path) == req["steal_if"]:  # still the dead one: nobody took it meanwhile
            aside = tempfile.mkdtemp(prefix=".dead-", dir=os.path.dirname(path))
            os.rename(path, aside + "/lock")
            shutil.rmtree(aside, ignore_errors=True)
        if _create(path, me):
            return {"acquired": True}
        return {"acquired": False, "holder": _holder(path, wait=2.0)}
    finally:
        os.rmdir(guard)


def _clear_stale_guard(guard, age=60.0):
    """A takeover guard left by a run killed inside it (its work takes milliseconds)."""
    try:
        if time.time() - os.stat(guard).st_mtime > age:
            os.rmdir(guard)
    except OSError:
        pass


def release_lock(req):
    """Remove the lock only if it is ours (`token`, or `force`); print what happened."""
    path = req["path"]
    if not os.path.isdir(path):
        print(json.dumps({"released": False, "holder": None}))
        return
    held = _holder(path)
    if not req.get("force") and held.get("token") != req.get("token"):
        print(json.dumps({"released": False, "holder": held}))
        return
    aside = f"{path}.released-{os.getpid()}"
    os.rename(path, aside)
    shutil.rmtree(aside, ignore_errors=True)
    print(json.dumps({"released": True, "holder": held}))


def instance_id():
    """The EC2 instance id cloud-init recorded at boot (a sandbox host's is written likewise):
    the host's id as a target, with no metadata request and no EC2 lookup."""
    try:
        with open("/var/lib/cloud/data/instance-id") as f:
            return f.read().strip() or None
    except OSError:
        return None


def lock_only(req):
    print(json.dumps(take_lock(req)))


def groups_of(name):
    """A user's groups (primary first), or None when there is no such user."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        return None
    primary = grp.getgrgid(pw.pw_gid).gr_name
    return [primary] + sorted(g.gr_name for g in grp.getgrall()
                              if name in g.gr_mem and g.gr_name != primary)


def main(P):
    current = None
    try:
        current = os.path.basename(os.readlink(P["current"]))
    except OSError:
        pass
    user = groups_of(P.get("user") or "") is not None
    app_user = groups_of(P.get("app_user") or "")
    lists = [os.path.getmtime(p) for p in glob.glob("/var/lib/apt/lists/*_Packages*")]
    found = installed(P.get("packages", []))
    units = unit_states(P.get("units", []))
    print(json.dumps({
        "lock": take_lock(P["lock"]) if P.get("lock") else None,
        "os": os_release(),
        "instance_id": instance_id(),
        "installed": found,
        "ruby": ruby(found),
        "apt_lists_age": (time.time() - max(lists)) if lists else None,
        "user": user,
        "app_user": app_user,
        "nodes": {p: node(p) for p in P.get("nodes", [])},
        "files": {p: sha(p) for p in P.get("files", [])},
        "texts": {p: text(p) for p in P.get("texts", [])},
        "releases": releases(P["releases"]),
        "current": current,
        # the current release's asset manifest: hosts whose manifests match serve one build
        "assets_build": (asset_manifest(P["current"], P["releases"]) or {}).get("sha256")
        if current else None,
        "units": units,
        "nginx": nginx_loaded(P["nginx"], units.get("nginx", {}).get("main_pid"))
        if P.get("nginx") else None,
        "bundle_abis": sorted(os.listdir(P["bundle"] + "/ruby"))
        if P.get("bundle") and os.path.isdir(P["bundle"] + "/ruby") else [],
    }))
