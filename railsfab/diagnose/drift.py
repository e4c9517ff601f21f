"""Drift: the app server's unit and config and nginx's site as they are on the host, against
what railsfab renders for the stage now; and a unit changed on disk that systemd has not read
again (the next restart would run it). Warnings: the app works now, and `fab deploy` puts
back (and reloads) what it renders."""

from __future__ import annotations

import difflib

from railsfab.diagnose.base import Context, Finding
from railsfab.inventory import Inventory
from railsfab.paths import Paths

KEYS = {"unit": "unit", "server_config": "server_config", "site": "nginx_site"}


def expected(inv: Inventory, paths: Paths) -> dict[str, list[str]]:
    """{host path: the texts railsfab may render there} (puma's unit has two: with and
    without systemd's notify, which the hosts' puma decides)."""
    from railsfab import appserver, render

    server = appserver.for_app(inv.stage.app, paths, https=inv.stage.https)
    templates = render.environment(inv.root)
    out: dict[str, list[str]] = {}
    for notify in (False, True):
        for key, text in server.files(templates, notify=notify).items():
            where = getattr(paths, KEYS[key])
            if text not in out.setdefault(where, []):
                out[where].append(text)
    return out


def summary(on_host: str, wanted: list[str]) -> str:
    """"2 lines differ (the host has: 'TimeoutStopSec=31')" against the closest rendering."""
    best = None
    for text in wanted:
        diff = [x for x in difflib.unified_diff(text.splitlines(), on_host.splitlines(),
                                                lineterm="", n=0)
                if x[:1] in "+-" and not x.startswith(("+++", "---"))]
        if best is None or len(diff) < len(best):
            best = diff
    host_lines = [x[1:].strip() for x in best if x.startswith("+")]
    first = f" (the host has: {host_lines[0][:80]!r})" if host_lines else ""
    return f"{len(best)} line(s) differ from what railsfab renders{first}"


def drifted(d: dict, ctx: Context, paths: list[str]) -> list[str]:
    texts, wanted = d.get("texts") or {}, ctx.expected or {}
    said = []
    for path in paths:
        on_host = texts.get(path)
        if path in wanted and on_host is not None and on_host not in wanted[path]:
            said.append(f"{path}: {summary(on_host, wanted[path])}")
    return said


def server_drift(d: dict, ctx: Context) -> Finding | None:
    unit = d["server"].get("unit") or {}
    said = drifted(d, ctx, [ctx.paths.unit, ctx.paths.server_config])
    if unit.get("NeedDaemonReload") == "yes":
        said.insert(0, f"{ctx.paths.unit} changed on disk after systemd read it: the next "
                       "restart runs what is on disk, not what runs now")
    if not said:
        return None
    return "; ".join(said), ("fab deploy (it renders the files again, reloads systemd and "
                             "restarts the app as its plan says)")


def site_drift(d: dict, ctx: Context) -> Finding | None:
    said = drifted(d, ctx, [ctx.paths.nginx_site])
    if not said:
        return None
    return "; ".join(said), "fab deploy (it renders the site again and reloads nginx)"
