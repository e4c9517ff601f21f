"""The app server a stage runs, behind one interface: `AppServer`, with `Unicorn` and `Puma`.

Nothing outside this package names a server: deploy, rollback, restart, check, the diagram
and the host spec ask the stage's server (and, during a switch, the other one) for its
files, its address, its processes and its restarts.
"""

from __future__ import annotations

from railsfab.appserver.base import AppServer
from railsfab.appserver.puma import Puma
from railsfab.appserver.unicorn import Unicorn
from railsfab.inventory import App
from railsfab.paths import Paths

SERVERS: dict[str, type[AppServer]] = {"unicorn": Unicorn, "puma": Puma}

__all__ = ["SERVERS", "AppServer", "Puma", "Unicorn", "for_app", "others"]


def for_app(app: App, paths: Paths | None = None, *, https: bool = False) -> AppServer:
    """The server the stage asks for."""
    return SERVERS[app.app_server](app, paths or Paths.of(app), https=https)


def others(app: App, paths: Paths | None = None, *, https: bool = False) -> list[AppServer]:
    """The servers the stage does not run: retired from hosts that still run one."""
    return [cls(app, paths or Paths.of(app), https=https) for name, cls in SERVERS.items()
            if name != app.app_server]
