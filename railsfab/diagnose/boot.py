"""What the app server's first error since it was started calls for (the fix), and what the
host shows about it (the evidence the fix follows from)."""

from __future__ import annotations

import re

from railsfab.diagnose.base import Context
from railsfab.diagnose.evidence import app_location, denial, grant, missing_env, or_go_back

DENIED = re.compile(r"(?i)permission denied|EACCES|operation not permitted")


# what systemd could not do to start the unit (it never ran the server), and its undoing
SYSTEMD_FIXES = {
    "Failed to load environment files": "{env} is missing or unreadable: fab deploy writes it "
                                        "(root, 0600) and starts {unit}",
    "Failed to determine user credentials": "the app's user {user} does not exist: fab deploy "
                                            "creates it and starts {unit}",
    "Failed at step EXEC spawning": "the unit's program is not installed: fab deploy installs "
                                    "its packages and starts {unit}",
}


def boot_fix(d: dict, ctx: Context) -> str:
    """What the first error since the server's last start calls for."""
    srv, p = d["server"], ctx.paths
    err = srv.get("error")
    restart = f"sudo systemctl restart {p.unit_name}"
    if not err:  # stopped, and nothing it logged says it cannot start
        stopped = srv["active"] in ("inactive", "failed")
        return f"sudo systemctl start {p.unit_name}" if stopped else ""
    said = SYSTEMD_FIXES.get(next((k for k in SYSTEMD_FIXES if k in err["line"]), ""))
    if said:
        return said.format(env=p.env_file, user=ctx.app_user, unit=p.unit_name)
    if "ExecStartPre=" in err["line"]:
        return control_fix(srv, ctx)
    if err.get("gem"):
        return gem_fix(err["gem"], ctx)
    missing = missing_env(err["line"], srv.get("env_keys", []))
    if missing:
        return (f"{', '.join(missing)} is not set in {p.env_file}: add it to "
                "app.secrets_file (or the environment) and fab deploy, which writes "
                f"{p.env_file} and restarts {p.unit_name}")
    for path in err.get("paths", []):
        if path["path"] in (p.server_config, p.unit, p.env_file):
            return f"fab deploy writes {path['path']} again (it was changed by hand)"
    need = denied(err)
    if need:
        return f"{grant(need, ctx.modes)} && {restart}"
    where = app_location(backtrace(srv.get("log", []), err["line"]))
    if where:
        return f"the app fails as it boots, at {where}: fix it and fab deploy{or_go_back(d)}"
    return ""


def boot_evidence(d: dict, ctx: Context) -> str:
    """What the host shows about the first error, which its fix follows from: the env file
    that lacks a name, the path and mode that deny the app's user."""
    srv, p = d["server"], ctx.paths
    err = srv.get("error")
    if not err:
        return ""
    if "Failed to load environment files" in err["line"]:
        return f"; the unit's EnvironmentFile is {p.env_file}"
    if "ExecStartPre=" in err["line"]:
        return "".join(f"; {drop_in} adds to the unit (railsfab writes no drop-in)"
                       for drop_in in drop_ins(srv))
    gem = err.get("gem") or {}
    if gem and not gem.get("package"):
        return (f"; no Debian package provides it (dpkg); the release ({p.current}) loads its "
                f"gems from {gems_dir(p)} (its Gemfile: {p.gemfile_in(p.current)})")
    if gem.get("package"):
        same = gem["provides"] == gem["version"]
        return (f"; dpkg: {gem['package']} provides {gem['gem']} {gem['provides']}"
                + (", installed, yet Bundler does not find it" if same else ""))
    missing = missing_env(err["line"], srv.get("env_keys", []))
    if missing:
        return f"; {p.env_file} sets no {', '.join(missing)}"
    need = denied(err)
    return f"; {denial(need)}" if need else ""


def denied(err: dict) -> dict | None:
    """A permission error's first path the app's user may not use, as the probe read it."""
    if not DENIED.search(err["line"]):
        return None
    for path in err.get("paths", []):
        for need in (path.get("read") or {}, path["app_user"]):
            if not need.get("ok", True):
                return need
    return None


def backtrace(log: list[str], line: str) -> list[str]:
    """The error line and the indented frames that follow it in the log (its backtrace:
    the first frame in the app's own code is where the app called what failed)."""
    at = next((i for i, ln in enumerate(log) if ln.strip()[:300] == line), None)
    if at is None:
        return [line]
    frames = [line]
    for ln in log[at + 1:]:
        if not ln[:1].isspace():
            break
        frames.append(ln)
    return frames


def drop_ins(srv: dict) -> list[str]:
    """The unit's drop-in files (systemd's DropInPaths): railsfab writes none."""
    return (srv.get("unit") or {}).get("DropInPaths", "").split()


def control_fix(srv: dict, ctx: Context) -> str:
    """A command systemd runs before (or beside) the server failed: a drop-in's, else the
    unit's own (which fab deploy renders)."""
    unit = ctx.paths.unit_name
    added = drop_ins(srv)
    if added:
        return (f"remove (or fix) {' '.join(added)}, not railsfab's, then sudo systemctl "
                f"daemon-reload && sudo systemctl restart {unit}")
    return f"fab deploy writes {ctx.paths.unit} again (it was changed by hand) and starts {unit}"


def gem_fix(gem: dict, ctx: Context) -> str:
    """What puts back the gem (version) Bundler could not find: Debian's package of it, or
    the deploy's bundle step."""
    name = f"{gem['gem']} {gem['version']}" if gem.get("version") else gem["gem"]
    restart = f"sudo systemctl restart {ctx.paths.unit_name}"
    if gem.get("package") and gem.get("provides") == gem.get("version"):
        return (f"sudo apt-get install --reinstall {gem['package']} (Debian's package of "
                f"{name}), then {restart}")
    if gem.get("package"):
        return (f"{gem['package']} provides {gem['gem']} {gem['provides']}, the release's "
                f"Gemfile.lock asks {name}: make them agree (a Gemfile.lock resolved against "
                "the hosts' packages, or the package of that version), then fab deploy")
    p = ctx.paths
    env = " ".join(f"{k}={v}" for k, v in p.bundler_env(p.current).items())
    # (fab deploy would not: its gems step runs when the Gemfile.lock changes)
    return (f"install it where the release loads its gems, as their owner: cd {p.current} && "
            f"sudo -u $(stat -c %U {gems_dir(p)}) env {env} bundle install, then {restart}")


def gems_dir(p) -> str:
    return p.bundle if p.gems == "bundler" else p.gem_home
