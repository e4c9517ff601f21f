"""What every app server offers railsfab: rendered files, an address, its processes, a
verified zero-downtime restart, and readiness that means serving."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from railsfab import onhost, remote, render
from railsfab.inventory import App
from railsfab.paths import Paths

READY_FAILURES = {
    4: "{server} stopped before it answered",
    5: "{server} did not answer on {where} in time",
    6: "{server} answers on {where}, with an error",
}


class AppServer(ABC):
    name: ClassVar[str]  # as in hosts.yaml's app_server
    title: ClassVar[str]  # as people write it
    # pgrep -f pattern matching every process of this server (masters and workers)
    processes: ClassVar[str]
    master_pattern: ClassVar[str]  # pgrep -f pattern matching the master only
    # The exit statuses of a failed zero-downtime restart that leave the running server as
    # it was (unicorn: the new master never took over, the old one keeps serving). Any other
    # failure may have left it changed (puma's master moved to the new release; a unicorn
    # handover that failed after the old master quit), and a revert restarts it.
    unchanged_failures: ClassVar[frozenset[int]] = frozenset()
    # Can it answer clients itself, with no nginx in front (`nginx: false`)?
    faces_clients: ClassVar[bool] = False

    def __init__(self, app: App, paths: Paths, *, https: bool = False) -> None:
        self.app = app
        self.paths = replace(paths, app_server=self.name)
        self.https = https  # clients come through TLS: readiness asks as they do

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.app.name})"

    # --- what the host should have ------------------------------------------------------

    def notify(self, source: Path) -> bool:
        """Can it tell systemd when it is ready (Type=notify) with this app's bundle?"""
        return False

    def files(self, templates, *, notify: bool) -> dict[str, str]:
        """server_config, unit and (behind nginx) the site, all from the same paths."""
        ctx = {"app": self.app, "paths": self.paths, "upstream": f"{self.app.name}_app",
               "notify": notify, "https": self.https}
        out = {
            "server_config": render.render(templates, f"{self.name}.rb.j2", **ctx),
            "unit": render.render(templates, f"{self.name}.service.j2", **ctx),
        }
        if self.app.nginx:
            out["site"] = render.render(templates, "nginx-site.conf.j2", **ctx)
        return out

    @property
    def where(self) -> str:
        """Where it listens: its unix socket behind nginx, else its TCP port."""
        return self.paths.socket if self.app.nginx else f"tcp :{self.app.port}"

    def capacity(self) -> str:
        """Its processes as people count them, e.g. for the diagram."""
        return f"{self.app.workers} workers"

    # --- restarts ---------------------------------------------------------------------------

    @abstractmethod
    def restart_mode(self, *, gems_changed: bool, config_changed: bool) -> str:
        """The zero-downtime restart that picks up what changed."""

    @property
    def modes(self) -> tuple[str, ...]:
        """Restart modes `fab restart-app` offers (the first is the default)."""
        return ("phased", "hot")

    @abstractmethod
    def restart(self, conn, *, mode: str, step: str,
                on_line: Callable[[str], None] | None = None) -> str:
        """A verified zero-downtime restart; a one-line summary, or RailsfabError."""

    def wait_serving(self, conn, *, step: str,
                     on_line: Callable[[str], None] | None = None) -> int:
        """Block until it answers HTTP on its own socket or port (bounded by boot_timeout);
        the milliseconds it took. systemd's "active" alone is not enough: a Type=simple
        unit is active before the app has loaded."""
        env = {"HEALTH": self.app.health_path, "TIMEOUT": str(self.app.boot_timeout),
               "PROTO": "https" if self.https else "",
               "UNIT": self.paths.unit_name, "LOG": self.paths.server_log,
               "RAILS_LOG": self.paths.rails_log(self.app.rails_env),
               "USER_": self.app.run_user}
        env.update({"SOCKET": self.paths.socket} if self.app.nginx
                   else {"PORT": str(self.app.port)})
        failures = {k: v.format(server=self.title, where=self.where)
                    for k, v in READY_FAILURES.items()}
        _, ms = remote.checked_script(
            conn, onhost.load("serving.sh"), env, step=step,
            timeout=self.app.boot_timeout + 30, failures=failures,
            fix=f"see {self.paths.server_log} on the host", on_line=on_line)
        return int(ms)
