"""The release ledger on each host, and `fab rollback`.

Each release carries `.railsfab-release.json`: `prepared` once uploaded and built, `good`
once its verification passed on every host of the deploy. Releases of a deploy that
failed are moved to `releases-failed/` (kept for inspection), so neither cleanup nor
rollback can ever pick them. Rollback goes to the newest good release older than the
current one (or `--to ID`), with the same zero-downtime handover and verification as a
deploy, under the deploy lock.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from railsfab import appserver, commands, facts, lock, remote, verify
from railsfab.errors import RailsfabError
from railsfab.inventory import Inventory
from railsfab.paths import Paths
from railsfab.report import Reporter


@dataclass
class Release:
    id: str
    state: str
    current: bool


def ledger(f: facts.Facts) -> list[Release]:
    return [Release(rid, meta.get("state", "unknown"), rid == f.current)
            for rid, meta in sorted(f.releases.items())]


def rollback_target(f: facts.Facts, to: str | None) -> str:
    rels = ledger(f)
    if to:
        chosen = next((r for r in rels if r.id == to), None)
        if chosen is None:
            raise RailsfabError(f"no release {to}; releases: {', '.join(r.id for r in rels)}",
                                step="rollback", fix="pick an id from `fab releases`")
        if chosen.state != "good":
            raise RailsfabError(f"release {to} is {chosen.state}, not good", step="rollback",
                                fix="roll back only to a release that passed verification")
        return to
    older = [r for r in rels if r.state == "good" and f.current and r.id < f.current]
    if not older:
        raise RailsfabError(f"no good release older than {f.current or '(none)'}",
                            step="rollback", state="current unchanged",
                            fix="see `fab releases`; deploy a fixed version instead")
    return older[-1].id


def _facts(inv: Inventory, conn, paths: Paths, holder: dict | None) -> facts.Facts:
    app = inv.stage.app
    return facts.gather(conn, paths, packages=[], user=app.deploy_user, nodes=[], files=[],
                        units=[paths.unit_name], lock_holder=holder)


def list_releases(inv: Inventory, only: str | None) -> dict[str, list[Release]]:
    app = inv.stage.app
    paths = Paths(app.name, app.deploy_to, app.app_server)

    def one(host):
        conn = remote.open_checked(inv, host)
        try:
            return host.name, ledger(_facts(inv, conn, paths, None))
        finally:
            conn.close()

    hosts = inv.hosts(role="web", only=only)
    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        return dict(pool.map(one, hosts))


def rollback(inv: Inventory, rep: Reporter, *, only: str | None, to: str | None) -> None:
    app = inv.stage.app
    paths = Paths(app.name, app.deploy_to, app.app_server)
    me = lock.holder("fab rollback")
    hosts = inv.hosts(role="web", only=only)

    def one(host) -> None:
        conn = remote.open_checked(inv, host)
        locked = False
        try:
            with rep.step(host.name, "ledger") as s:
                f = _facts(inv, conn, paths, me)
                got = f.raw["lock"]
                if not got["acquired"]:
                    lock.acquire(conn, paths, me, steal_if=got["holder"]
                                 if lock.is_stale(got["holder"], me) else None)
                locked = True
                target = rollback_target(f, to)
                s.ok(f"current {f.current}, rolling back to {target}")
            with rep.step(host.name, "switch") as s:
                remote.sh(conn, commands.switch_current(paths, target, owner=app.deploy_user),
                          sudo=True, step="switch")
                s.change(f"current -> releases/{target}")
            with rep.step(host.name, app.app_server) as s:
                # hot for puma: the release rolled back to may have other gems
                s.change(appserver.restart(conn, paths, app, step=app.app_server, mode="hot"))
            with rep.step(host.name, "verify") as s:
                s.ok(verify.serving(conn, paths, app))
        finally:
            if locked:
                lock.release(conn, paths)
            conn.close()

    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        errors = [f.exception() for f in [pool.submit(one, h) for h in hosts]]
    failed = [e for e in errors if e]
    if failed:
        raise failed[0] if isinstance(failed[0], RailsfabError) else \
            RailsfabError(f"{type(failed[0]).__name__}: {failed[0]}", step="rollback")
