"""fab lock.release: clear a deploy lock left by a deploy that died."""

from __future__ import annotations

from invoke import Collection

from railsfab.report import Reporter
from tasks._boundary import STAGE_HELP, command, load_stage


@command(name="lock.release", help={"stage": STAGE_HELP,
                                    "only": "comma-separated host names (default: all web hosts)"})
def release(c, stage=None, only=None):
    """Remove a stale deploy lock (after a deploy that was killed), showing who held it."""
    from railsfab import lock, remote
    from railsfab.paths import Paths

    inv = load_stage(stage)
    rep = Reporter()
    app = inv.stage.app
    paths = Paths.of(app)
    for host in inv.hosts(role="web", only=only):
        with rep.step(host.name, "lock") as s:
            conn = remote.open_checked(inv, host)
            try:
                held = lock.read(conn, paths)
                if lock.release(conn, paths):
                    s.change(f"released (was held by {lock.describe(held or {})})")
                else:
                    s.ok("no lock")
            finally:
                conn.close()


ns = Collection("lock", release)
