"""What the diagnosis layers are made of: the verdict, the context, the Layer base class.

A layer that does not apply to the stage (`applies(ctx)` is false: no nginx in front, no
bucket, no target group, no database, no stack) is reported as `skip` with its `skip_reason(ctx)`.
Otherwise `verdict(probe, ctx)` runs its `checks` in order: each is a small named function
of the probe's data and the context that returns (detail, fix) when it finds its fault, else
None; the first fault found fails the layer, and when none is found the layer is ok. A fix
is "" when the evidence does not show what would help.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from railsfab.paths import Paths


@dataclass
class Verdict:
    layer: str
    status: str  # ok | warn | FAIL | skip | not deployed
    detail: str
    fix: str = ""
    # the later layer the evidence puts the fault in (an app that cannot boot because the
    # database refuses its login): that layer is the cause
    blame: str = ""
    # of the broken layers, the first in request order (unless it blames another broken
    # one) is the "cause"; the others are shown as its "consequence"s
    role: str = ""


@dataclass(frozen=True)
class Front:
    """What answers the host's HTTP port: nginx on :80, or the app server itself."""

    nginx: bool
    port: int
    listening: bool  # something listens on `port`

    @classmethod
    def of(cls, f: dict) -> Front:
        if f["nginx"]:  # the port is nginx's :80; nothing reads the rest
            return cls(f["nginx"], f.get("port"), f.get("listening"))
        return cls(f["nginx"], f["port"], f["listening"])


# A probe document without "front" predates stages without nginx: nginx is in front.
NGINX_FRONT = {"nginx": True, "port": 80, "listening": True}


@dataclass(frozen=True)
class Context:
    """What the check knows besides the probe's data, and what it derives from it once."""

    paths: Paths
    workers: int
    app_user: str
    front: Front
    database: bool  # the env file names a DATABASE_HOST (the probe tried to reach it)
    s3: dict | None = None
    lb: dict | None = None
    health: str = "/up"  # the app's health path
    https: bool = False  # clients come through TLS (the probe sent X-Forwarded-Proto)
    pipeline: bool = True  # the release has an asset pipeline
    # The instance's security groups (railsfab.diagnose.probe.security_groups); None: no stack
    sg: dict | None = None
    host: str = ""  # its name in hosts.yaml (for a fix that runs a command on it alone)
    # {host path: what railsfab renders there now} (railsfab.diagnose.drift); None: not asked
    expected: dict | None = None
    # {folder: (owner, group, mode)} as fab deploy sets them (railsfab.ops.host.dirs): a
    # fix gives such a folder exactly these back
    modes: dict | None = None
    # the stage's database, "host:port" (hosts.yaml's database:), beside what the app uses
    stage_db: str = ""
    # what only the fleet shows about this host (railsfab.diagnose.fleet.same_assets): its
    # assets beside the other web hosts'; None: not compared
    fleet: dict | None = None

    @classmethod
    def of(cls, d: dict, *, workers: int, app_user: str, paths: Paths,
           s3: dict | None = None, lb: dict | None = None, health: str = "/up",
           https: bool = False, sg: dict | None = None, host: str = "",
           expected: dict | None = None, modes: dict | None = None,
           stage_db: str = "", fleet: dict | None = None) -> Context:
        f = d.get("front") or NGINX_FRONT
        return cls(paths, workers, app_user, Front.of(f), d["db"] is not None, s3, lb,
                   health, https, d.get("pipeline", True), sg, host, expected, modes, stage_db,
                   fleet)

    @property
    def only(self) -> str:
        """` --only <host>`: a fix's fab command for this host alone ("" without a name)."""
        return f" --only {self.host}" if self.host else ""

    @property
    def app_address(self) -> str:
        """Where the app server must accept connections: nginx's socket, or the TCP port."""
        return self.paths.socket if self.front.nginx else f"tcp :{self.front.port}"

    def app_listening(self, d: dict) -> bool:
        return d["socket"]["listening"] if self.front.nginx else self.front.listening


Finding = tuple[str, ...]  # (detail, fix) or (detail, fix, the layer it blames)
Check = Callable[[dict, Context], Finding | None]


def last(lines: list[str], pattern: str) -> str | None:
    """The last line matching `pattern`, stripped, its last 200 characters."""
    for line in reversed(lines):
        if re.search(pattern, line):
            return line.strip()[-200:]
    return None


class Layer:
    name = ""
    checks: tuple[Check, ...] = ()
    # asked only when every check passed: what works now but will not stay so ("warn")
    warnings: tuple[Check, ...] = ()

    def applies(self, ctx: Context) -> bool:
        return True

    def skip_reason(self, ctx: Context) -> str:
        return ""

    def healthy(self, d: dict, ctx: Context) -> str:
        """The ok verdict's detail."""
        raise NotImplementedError

    def verdict(self, d: dict, ctx: Context) -> Verdict:
        for check in self.checks:
            found = check(d, ctx)
            if found:
                return Verdict(self.name, "FAIL", *found)
        for check in self.warnings:
            found = check(d, ctx)
            if found:
                return Verdict(self.name, "warn", *found)
        return Verdict(self.name, "ok", self.healthy(d, ctx))

    def judge(self, d: dict, ctx: Context) -> Verdict:
        """This layer's line in the report: skip when it does not apply, else its verdict."""
        if not self.applies(ctx):
            return Verdict(self.name, "skip", self.skip_reason(ctx))
        return self.verdict(d, ctx)
