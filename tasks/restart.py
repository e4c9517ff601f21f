"""fab restart-app (and its alias restart-unicorn): a verified zero-downtime restart."""

from __future__ import annotations

from railsfab.report import Reporter
from tasks._boundary import ONLY_HELP, STAGE_HELP, command, load_stage

HELP = {
    "stage": STAGE_HELP,
    "only": ONLY_HELP,
    "hard": "stop and start instead of the zero-downtime restart (a short gap)",
    "hot": "puma: re-exec the master (new config and gems) instead of a phased restart",
}


@command(name="restart-app", help=HELP)
def restart_app(c, stage=None, only=None, hot=False, hard=False):
    """Restart the app server with zero downtime (unicorn: USR2; puma: phased), verified."""
    _restart(stage, only, hot, hard, "restart-app")


@command(name="restart-unicorn", help={k: v for k, v in HELP.items() if k != "hot"})
def restart_unicorn(c, stage=None, only=None, hard=False):
    """Alias of restart-app for a unicorn stage (refuses a puma stage)."""
    _restart(stage, only, False, hard, "restart-unicorn", require="unicorn")


def _restart(stage, only, hot, hard, name, require=None) -> None:
    from railsfab.restart import restart

    inv = load_stage(stage)
    rep = Reporter()
    try:
        restart(inv, rep, only=only, hot=hot, hard=hard, command=f"fab {name}",
                require=require)
    finally:
        if rep.results:
            rep.recap(name)
