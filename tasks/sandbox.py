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


@command(name="sandbox.mail", help={"stage": STAGE_HELP,
                                   "show": "print message N in full (1 = the oldest; -1 = the "
                                           "newest)"})
def mail(c, stage=None, show=None):
    """List the mail the stage's app sent (kept by the sandbox's mail sink; none is sent)."""
    from rich.markup import escape

    from railsfab.sandbox.core import Sandbox
    from railsfab.sandbox.mail import messages

    inv = load_stage(stage, hosts=False)
    rep = Reporter()
    found = messages(Sandbox(inv, rep).maildir)
    if show is not None:
        m = found[int(show) - 1 if int(show) > 0 else int(show)] if found else None
        if m is None:
            rep.info("no mail")
            return
        rep.info(escape(f"From: {m.sender}\nTo: {m.to}\nDate: {m.date}\nSubject: {m.subject}"
                        f"\n\n{m.body}"))
        return
    table = Table(title=f"mail sent by stage {inv.stage_name}", title_justify="left")
    for col in ("#", "date", "from", "to", "subject"):
        table.add_column(col)
    for i, m in enumerate(found, 1):
        table.add_row(str(i), *(escape(x) for x in (m.date, m.sender, m.to, m.subject)))
    rep.console.print(table)


ns = Collection("sandbox", up, down, status, mail)
