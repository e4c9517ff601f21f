"""fab releases / fab rollback: the release ledger, and going back to a good release."""

from __future__ import annotations

from rich.table import Table

from railsfab.report import Reporter
from tasks._boundary import ONLY_HELP as ONLY
from tasks._boundary import STAGE_HELP, command, load_stage


@command(name="releases", help={"stage": STAGE_HELP, "only": ONLY})
def releases(c, stage=None, only=None):
    """List each host's releases, their state (prepared/good) and which one is current."""
    from railsfab import releases as ledger

    inv = load_stage(stage)
    rep = Reporter()
    for host, rels in ledger.list_releases(inv, only).items():
        table = Table(title=host, title_justify="left")
        for col in ("release", "state", "current"):
            table.add_column(col)
        for r in rels:
            table.add_row(r.id, r.state, "← current" if r.current else "")
        rep.console.print(table)


@command(name="rollback", help={"stage": STAGE_HELP, "only": ONLY,
                                "to": "release id to go back to (default: the previous good one)"})
def rollback(c, stage=None, only=None, to=None):
    """Switch back to the previous good release: zero downtime, in batches through the ALB."""
    from railsfab import releases as ledger

    inv = load_stage(stage)
    rep = Reporter()
    try:
        ledger.rollback(inv, rep, only=only, to=to)
    finally:
        rep.recap("rollback")
