"""fab restart-app / restart-unicorn: a verified zero-downtime restart on every web host."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from railsfab import appserver, lock, remote, rolling
from railsfab.errors import RailsfabError
from railsfab.paths import Paths
from railsfab.report import Reporter
from tasks._boundary import STAGE_HELP, command, load_stage

HELP = {
    "stage": STAGE_HELP,
    "only": "comma-separated host names (default: every web host)",
    "hard": "stop and start instead of the zero-downtime restart (a short gap)",
    "hot": "puma: re-exec the master (new config and gems) instead of a phased restart",
}


@command(name="restart-app", help=HELP)
def restart_app(c, stage=None, only=None, hard=False, hot=False):
    """Restart the stage's app server with zero downtime (unicorn: USR2; puma: phased)."""
    _restart(stage, only, hard, hot, command="restart-app")


@command(name="restart-unicorn", help={k: v for k, v in HELP.items() if k != "hot"})
def restart_unicorn(c, stage=None, only=None, hard=False):
    """Restart unicorn with zero downtime (USR2 handover, verified; systemd keeps tracking)."""
    _restart(stage, only, hard, False, command="restart-unicorn", require="unicorn")


def _restart(stage, only, hard, hot, *, command: str, require: str | None = None) -> None:
    inv = load_stage(stage)
    app = inv.stage.app
    if require and app.app_server != require:
        raise RailsfabError(
            f"stage {inv.stage_name} runs {app.app_server}, not {require}",
            step=command, fix=f"fab restart-app --stage {inv.stage_name}")
    paths = Paths(app.name, app.deploy_to, app.app_server)
    rep = Reporter()
    hosts = inv.hosts(role="web", only=only)
    me = lock.holder(f"fab {command}")
    mode = "hot" if hot else "phased"

    def one(host) -> None:
        with rep.step(host.name, "restart") as s:
            conn = remote.open_checked(inv, host)
            try:
                lock.acquire(conn, paths, me)
            except BaseException:
                conn.close()
                raise
            try:
                if hard:
                    remote.sh(conn, f"systemctl restart {paths.unit_name}", sudo=True,
                              step="restart", timeout=app.boot_timeout + 120)
                    return s.change("stopped and started (--hard)")
                s.change(appserver.restart(conn, paths, app, step="restart", mode=mode))
            finally:
                lock.release(conn, paths)
                conn.close()

    def batch(batch_hosts) -> None:
        with ThreadPoolExecutor(max_workers=max(1, len(batch_hosts))) as pool:
            errors = [f.exception() for f in [pool.submit(one, h) for h in batch_hosts]]
        failed = [e for e in errors if e]
        if failed:
            raise failed[0] if isinstance(failed[0], RailsfabError) else \
                RailsfabError(str(failed[0]), step="restart")

    a = inv.stage.aws
    tg = rolling.TargetGroup(inv) if (a.target_group_arn or a.stack_name) else None
    try:
        if tg is not None and tg.configured:
            # Out of the ALB while it restarts, one batch at a time, back in once healthy.
            targets = {h.name: tg.target(h) for h in hosts}
            rolling.roll(tg, rep, hosts, targets, batch)
        else:
            batch(hosts)
    finally:
        rep.recap(command)
