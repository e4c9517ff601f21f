"""fab sandbox.up / sandbox.down / sandbox.status: EC2-like hosts on this machine."""

from __future__ import annotations

from invoke import Collection
from rich.table import Table

from railsfab.report import Reporter
from tasks._boundary import STAGE_HELP, command, load_stage


@command(name="sandbox.up", help={"stage": STAGE_HELP})
def up(c, stage=None):
    """Boot the stage's sandbox hosts (and sandbox.instances), apt proxy, AWS endpoint."""
    from railsfab.sandbox.core import Sandbox

    inv = load_stage(stage, hosts=False)
    rep = Reporter()
    rep.info(f"[bold]sandbox.up[/] stage {inv.stage_name}")
    Sandbox(inv, rep).up()
    rep.recap("sandbox.up")
    rep.info("nothing changed" if rep.changed_count == 0 else f"{rep.changed_count} changed")


@command(name="sandbox.down", help={"stage": STAGE_HELP})
def down(c, stage=None):
    """Stop the sandbox's processes and remove its hosts, namespaces and links."""
    from railsfab.sandbox.core import Sandbox

    inv = load_stage(stage, hosts=False)
    rep = Reporter()
    rep.info(f"[bold]sandbox.down[/] stage {inv.stage_name}")
    Sandbox(inv, rep).down()
    rep.recap("sandbox.down")


@command(name="sandbox.status", help={"stage": STAGE_HELP})
def status(c, stage=None):
    """Show each sandbox host and service, its address and state."""
    from railsfab.sandbox.core import Sandbox

    inv = load_stage(stage, hosts=False)
    rep = Reporter()
    table = Table(title=f"sandbox {inv.stage_name}", title_justify="left")
    for col in ("host", "address", "roles", "state", "detail"):
        table.add_column(col)
    colors = {"running": "green", "stopped": "red"}
    for row in Sandbox(inv, rep).status():
        color = colors.get(row.state, "yellow")
        table.add_row(row.name, row.address, row.roles, f"[{color}]{row.state}[/]", row.detail)
    rep.console.print(table)


ns = Collection("sandbox", up, down, status)
