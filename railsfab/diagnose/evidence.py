"""Reading the probe's evidence, and fixes derived from it (a path, a user, a unit, a pid).

Pure functions of the probe's document: no fix here knows a fault by name; each one is
built from what the evidence shows (who lacks which permission bit on which path, which
process holds a port, which variable the env file lacks, which file and line failed).
"""

from __future__ import annotations

import os
import re
import time

from railsfab.onhost.check_app import EXCEPTION
from railsfab.secrets import ENV_KEYS

BITS = {"r": "read", "w": "write", "x": "enter"}
# Ruby's uncaught exception: "path:line:in `method': message (Class)": the message
RUBY_RAISE = re.compile(r":\d+:in [`'][^']*': (.*)$")
IDENT = re.compile(r"\b[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)+\b")
# a file of the app's own code in a backtrace or an error: relative, or inside a release
APP_FILE = re.compile(r"(?:releases/\d+/|^|[\s(\[])((?:app|config|lib|db)/[\w./-]+\.(?:rb|erb|"
                      r"haml|slim|yml)):(\d+)")


def mib(n: float) -> str:
    return f"{n / 1048576:.1f} MiB" if n < 1 << 30 else f"{n / (1 << 30):.1f} GiB"


def holder(h: dict) -> str:
    """A process as evidence: pid, command, user, unit."""
    unit = f", {h['unit']}" if h.get("unit") else ""
    return f"pid {h['pid']} `{h['cmd'][:80]}` ({h.get('user', '?')}{unit})"


def stop_holder(h: dict) -> str:
    """The command that frees what process `h` holds: its service's stop, else a kill."""
    unit = h.get("unit") or ""
    if unit.endswith(".service"):
        return f"sudo systemctl stop {unit}"
    return f"sudo kill {h['pid']}"


def grant(denied: dict, modes: dict | None = None) -> str:
    """The smallest change that gives `denied['user']` what it lacks on `denied['path']`.
    A folder railsfab makes (`modes`: {path: (owner, group, mode)}, as fab deploy sets
    them) gets exactly its owner, group and mode back; any other path its owner's, group's
    bit, others' x, or an ACL for that user: never a new owner (handing a folder to another
    user breaks what its owner does with it)."""
    path, user, lacks = denied["path"], denied.get("user", "?"), denied.get("lacks", "")
    if denied.get("link"):  # never a chown through it: that would hand over its target
        return (f"sudo rm {path} (the link only, not {denied['link']}; fab deploy and the "
                "app make it again)")
    want = (modes or {}).get(path)
    if want:
        return set_as_railsfab(denied, *want)
    if denied.get("missing"):
        return f"sudo install -d -o {user} {path}"
    folder = (modes or {}).get(os.path.dirname(path))
    if folder and folder[0] == user and not denied.get("dir"):
        return (f"sudo chown {user}:{folder[1]} {path} (a file in the app's own "
                f"{os.path.dirname(path)})")
    if denied.get("owner") == user:
        return f"sudo chmod u+{lacks} {path}"
    if denied.get("group") in denied.get("groups", ()):
        return f"sudo chmod g+{lacks} {path}"
    if set(lacks) <= {"x"}:  # entering it: what every user may do in a folder above
        return f"sudo chmod o+x {path}"
    # that user alone, by an ACL: its owner and group keep what they have
    return f"sudo setfacl -m u:{user}:{lacks} {path}"


def set_as_railsfab(denied: dict, owner: str, group: str, mode: str) -> str:
    """The commands that give `denied['path']` the owner, group and mode fab deploy sets."""
    path = denied["path"]
    if denied.get("missing"):
        return f"sudo install -d -o {owner} -g {group} -m {mode} {path} (as fab deploy makes it)"
    steps = []
    if (denied.get("owner"), denied.get("group")) != (owner, group):
        steps.append(f"sudo chown {owner}:{group} {path}")
    if denied.get("mode") != mode:
        steps.append(f"sudo chmod {mode} {path}")
    return " && ".join(steps or ["fab deploy"]) + " (as fab deploy sets it)"


def denial(denied: dict) -> str:
    """Why `user` may not: "/srv/x is root:root 0755: deploy may not write it"."""
    if denied.get("missing"):
        return f"{denied['path']} does not exist"
    if denied.get("link"):
        return f"{denied['path']} is a link to {denied['link']}, where the app's own file belongs"
    wants = " or ".join(BITS.get(b, b) for b in denied.get("lacks", ""))
    return (f"{denied['path']} is {denied.get('owner')}:{denied.get('group')} "
            f"{denied.get('mode')}: {denied.get('user')} may not {wants} it")


def unit_summary(u: dict) -> str:
    """"activating (auto-restart), last result exit-code (status 1), restarted 3 times"."""
    state = u.get("ActiveState") or "missing"
    if u.get("SubState") not in (None, "", "dead", "running", u.get("ActiveState")):
        state += f" ({u['SubState']})"
    bits = [state]
    if u.get("Result") not in (None, "", "success"):
        status = u.get("ExecMainStatus")
        bits.append(f"last result {u['Result']}"
                    + (f" (status {status})" if status not in (None, "", "0") else ""))
    if u.get("NRestarts") not in (None, "", "0"):
        bits.append(f"restarted {u['NRestarts']} times")
    return ", ".join(bits)


def since_text(t: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) if t else "?"


def missing_env(line: str, keys: list[str]) -> list[str]:
    """Variables an error names that the env file does not set: UPPER_CASE names, and the
    lower-case spelling of a setting railsfab's env file supplies (Rails' "Missing
    `secret_key_base`" for SECRET_KEY_BASE)."""
    m = RUBY_RAISE.search(line)
    message = m.group(1) if m else line
    found = []
    for word in IDENT.findall(message):
        name = word.upper()
        if name not in keys and name not in found and (word.isupper() or name in ENV_KEYS):
            found.append(name)
    return found


def app_location(lines: list[str]) -> str | None:
    """The first file:line of the app's own code the lines name (config/x.rb:3)."""
    for line in lines:
        m = APP_FILE.search(line)
        if m:
            return f"{m.group(1)}:{m.group(2)}"
    return None


def previous_good(d: dict) -> str | None:
    """The newest good release other than the current one that is still on the host."""
    current = (d.get("release") or {}).get("target") or ""
    good = [r["id"] for r in (d.get("release") or {}).get("releases", [])
            if r.get("state") == "good" and not current.endswith("/" + r["id"])]
    return good[-1] if good else None


def or_go_back(d: dict) -> str:
    prev = previous_good(d)
    return f", or go back: fab rollback --to {prev}" if prev else ""


def request_error(d: dict) -> tuple[str | None, str | None]:
    """The error the app logged for the probe's own requests (by their X-Request-Id), and
    the app file and line it names."""
    asked = d.get("requests") or {}
    lines = asked.get("rails") or []
    err = next((ln for ln in lines if EXCEPTION.search(ln)), None)
    if err and asked.get("id"):  # what follows the request's tag (Logger's prefix, tags)
        err = err.split(asked["id"], 1)[-1].split("] ", 1)[-1]
    return (err.strip() if err else None), app_location(lines)
