"""fab aws.provision / aws.status / aws.destroy: the stage's AWS infrastructure."""

from __future__ import annotations

from invoke import Collection, Exit
from rich.table import Table

from railsfab.errors import ConfigError
from railsfab.report import Reporter
from tasks._boundary import STAGE_HELP, command, load_stage


@command(name="aws.provision", help={"stage": STAGE_HELP})
def provision(c, stage=None):
    """Create or update the stage's CloudFormation stack: ALB, target group, SGs, S3, role."""
    from railsfab import stack

    inv = load_stage(stage, hosts=False)
    rep = Reporter()
    rep.info(f"[bold]aws.provision[/] stack {inv.stage.aws.stack_name} "
             f"({inv.stage.aws.endpoint_url or inv.stage.aws.region})")
    changed = stack.provision(inv, rep)
    for k, v in stack.outputs(inv).items():
        rep.info(f"  {k:<20} {v}")
    rep.info("changed" if changed else "no change")
    warning = stack.http_only(inv)
    if warning:
        rep.info(f"[yellow]warning[/] {warning}")


@command(name="aws.status", help={"stage": STAGE_HELP})
def status(c, stage=None):
    """Show the stack, its outputs, and the target group's targets with their health."""
    from railsfab import aws as awslib
    from railsfab import outputs

    inv = load_stage(stage, hosts=False)
    rep = Reporter()
    if not inv.stage.aws.stack_name:
        raise ConfigError(f"{inv.path.name}: stage {inv.stage_name} has no aws.stack_name",
                          fix="name the stage's stack in aws.stack_name, then "
                              "`fab aws.provision`")
    cl = awslib.clients(inv)
    status, out = outputs.read(inv)
    if status is None:
        raise outputs.lacking(inv, [], None)
    rep.info(f"stack {inv.stage.aws.stack_name}: {status}")
    for k, v in out.items():
        rep.info(f"  {k:<20} {v}")
    absent = outputs.missing(out, outputs.needed(inv))
    if absent:  # named, with the fix; never a None handed to AWS
        raise outputs.lacking(inv, absent, status)
    tg = inv.stage.aws.target_group_arn or out["TargetGroupArn"]
    table = Table(title="targets", title_justify="left")
    for col in ("target", "port", "state", "reason"):
        table.add_column(col)
    for t in cl.elbv2.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]:
        h = t["TargetHealth"]
        table.add_row(t["Target"]["Id"], str(t["Target"].get("Port", "")), h["State"],
                      h.get("Reason", ""))
    rep.console.print(table)


@command(name="aws.destroy", help={"stage": STAGE_HELP, "yes": "do not ask for confirmation"})
def destroy(c, stage=None, yes=False):
    """Delete the stage's stack (asks first; empties the bucket, every version)."""
    from railsfab import destroy as teardown

    inv = load_stage(stage, hosts=False)
    name = inv.stage.aws.stack_name
    if not yes:
        try:
            answer = input(f"Delete stack {name} and everything in it, including bucket "
                           f"{inv.stage.aws.bucket}? Type the stack name to confirm: ")
        except EOFError:  # no terminal to ask: never delete unconfirmed
            answer = ""
        if answer.strip() != name:
            print()
            print("not confirmed; nothing deleted")
            raise Exit(code=1)
    rep = Reporter()
    teardown.destroy(inv, rep)


ns = Collection("aws", provision, status, destroy)
