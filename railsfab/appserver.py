"""The app server a stage runs (unicorn or puma): its rendered files and its restart.

Deploy, restart-app and check ask this module instead of naming a server: the config, the
unit and the nginx site are rendered from one Paths, and `restart` picks the server's own
zero-downtime mechanism.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from railsfab import puma, render, unicorn
from railsfab.inventory import App
from railsfab.paths import Paths

SERVERS = ("unicorn", "puma")


def other(app_server: str) -> str:
    return next(s for s in SERVERS if s != app_server)


def paths_of(paths: Paths, app_server: str) -> Paths:
    return replace(paths, app_server=app_server)


def notify_supported(source: Path) -> bool:
    """Can puma speak systemd's notify protocol with this app's bundle? Puma >= 6 has it
    built in; puma 5 needs the sd_notify gem in the bundle (Bundler hides gems it does not
    list, so an installed package is not enough)."""
    lock = source / "Gemfile.lock"
    gemfile = source / "Gemfile"
    text = (lock.read_text() if lock.exists() else "") + \
        (gemfile.read_text() if gemfile.exists() else "")
    if re.search(r"""^\s*gem\s+["']sd_notify["']|^\s{4}sd_notify \(""", text, re.M):
        return True
    m = re.search(r"^\s{4}puma \((\d+)\.", text, re.M)
    return bool(m and int(m.group(1)) >= 6)


def files(templates, app: App, paths: Paths, *, notify: bool) -> dict[str, str]:
    """server_config, unit and (behind nginx) site, all from the same `paths`."""
    ctx = {"app": app, "paths": paths, "upstream": f"{app.name}_app", "notify": notify}
    out = {
        "server_config": render.render(templates, f"{app.app_server}.rb.j2", **ctx),
        "unit": render.render(templates, f"{app.app_server}.service.j2", **ctx),
    }
    if app.nginx:
        out["site"] = render.render(templates, "nginx-site.conf.j2", **ctx)
    return out


def restart(conn, paths: Paths, app: App, *, step: str, mode: str = "phased") -> str:
    """Zero-downtime restart with the server's own mechanism; verified; raises on failure.
    `mode` matters for puma only: "phased" (workers one by one) or "hot" (re-exec)."""
    if app.app_server == "puma":
        return puma.restart(conn, paths, workers=app.workers,
                            timeout=app.boot_timeout + app.timeout, mode=mode, step=step)
    return unicorn.handover(conn, paths, user=app.deploy_user, workers=app.workers,
                            timeout=app.timeout, step=step)
