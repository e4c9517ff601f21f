"""The stage's stack outputs that commands rely on: required, never optional.

A stage with aws.stack_name rolls through the stack's target group and attaches the stack's
security group and instance profile. A stack that is missing, or lacks one of those outputs,
stops deploy, rollback, restart and check before anything changes on a host, with one line
naming the stack, what it lacks and the command that makes it: never a command that runs
without the ALB and says nothing. Only a stage with neither aws.stack_name nor
aws.target_group_arn has no load balancer.
"""

from __future__ import annotations

import re
import time

from railsfab.errors import RailsfabError
from railsfab.inventory import Inventory

# What each output is for, as the one line says it.
NEEDED = {
    "TargetGroupArn": "the ALB's target group",
    "AppSecurityGroupId": "the app hosts' security group",
    "AlbSecurityGroupId": "the ALB's security group",
    "InstanceProfileArn": "the hosts' instance profile",
}


def needed(inv: Inventory) -> tuple[str, ...]:
    """The outputs the stage's commands read (its own target group ARN, when hosts.yaml
    gives one, stands in for the stack's)."""
    return tuple(k for k in NEEDED
                 if not (k == "TargetGroupArn" and inv.stage.aws.target_group_arn))


def missing(out: dict[str, str], keys: tuple[str, ...]) -> list[str]:
    return [k for k in keys if not out.get(k)]


def lacking(inv: Inventory, absent: list[str], status: str | None) -> RailsfabError:
    """The one-line failure for a stack that does not exist (`status` None) or lacks
    `absent` outputs."""
    a = inv.stage.aws
    fix = f"fab aws.provision --stage {inv.stage_name}"
    if status is None:
        said = (f"stack {a.stack_name} (aws.stack_name of stage {inv.stage_name}) does not "
                f"exist in {a.region}")
    else:
        what = ", ".join(f"{k} ({NEEDED[k]})" if k in NEEDED else k for k in absent)
        said = (f"stack {a.stack_name} ({status}) lacks output{'s' if len(absent) > 1 else ''}"
                f" {what}")
    return RailsfabError(f"{said}: run `{fix}`", step="stack", fix=fix)


def read(inv: Inventory) -> tuple[str | None, dict[str, str]]:
    """(the stack's status, its outputs); (None, {}) when it does not exist."""
    from railsfab import aws, stack

    st = stack.describe(aws.clients(inv).cloudformation, inv.stage.aws.stack_name or "")
    if st is None:
        return None, {}
    return st["StackStatus"], {o["OutputKey"]: o["OutputValue"]
                               for o in st.get("Outputs") or []}


def users_url(inv: Inventory) -> str | None:
    """The address users type: the certificate's domain, or the ALB's DNS name (https when
    the ALB ends TLS); None without a stack. Never fails a finished deploy."""
    a = inv.stage.aws
    if not a.stack_name:
        return None
    scheme = "https" if a.certificate_arn or a.certificate_domain else "http"
    try:
        dns = read(inv)[1].get("AlbDnsName")
    except Exception:  # noqa: BLE001 - the deploy is done: a missing URL is no failure
        dns = None
    if a.certificate_domain:
        return f"https://{a.certificate_domain}/" + (f" (the ALB: {dns})" if dns else "")
    return f"{scheme}://{dns}/" if dns else None


def required(inv: Inventory, keys: tuple[str, ...] | None = None) -> dict[str, str]:
    """The stack's outputs, holding every one of `keys` (default: what the stage's commands
    read); RailsfabError naming the stack, the missing outputs and the fix otherwise."""
    keys = needed(inv) if keys is None else keys
    status, out = read(inv)
    absent = missing(out, keys)
    if status is None or absent:
        raise lacking(inv, absent, status)
    return out


# --- fab aws.provision: the outputs the template declares are all there ------------------

def declared_outputs(body: str) -> list[str]:
    """The outputs a rendered template declares (its last section, ours)."""
    section = body.partition("\nOutputs:\n")[2]
    return re.findall(r"^  (\w+):", section, re.M)


def kept(inv: Inventory, cf, body: str, params: list[dict], rep) -> tuple[dict, bool]:
    """(every output the template declares, read back; whether any had to be restored).
    A stack whose outputs went missing (an update with a template lacking them, an engine
    that dropped a resource it could not update) gets the template once more; what is still
    missing after that is named, with what to do."""
    from botocore.exceptions import ClientError

    from railsfab import stack

    name = inv.stage.aws.stack_name
    declared = declared_outputs(body)
    out = stack.outputs(inv)
    lost = [k for k in declared if not out.get(k)]
    if not lost:
        return out, False
    with rep.step("aws", "outputs") as s:
        since = time.time() - 5
        try:
            cf.update_stack(StackName=name, TemplateBody=body, Parameters=params,
                            Capabilities=["CAPABILITY_IAM"])
            stack.wait(cf, name, rep, stack.TERMINAL_OK, since=since)
        except ClientError as exc:
            if "No updates are to be performed" not in str(exc):
                raise
        out = stack.outputs(inv)
        still = [k for k in declared if not out.get(k)]
        if still:
            gone = sorted(set(declared_resources(body)) - set(tracked(cf, name)))
            raise RailsfabError(
                f"stack {name} lacks output{'s' if len(still) > 1 else ''} "
                f"{', '.join(still)} after its update"
                + (f": it no longer tracks resource{'s' if len(gone) > 1 else ''} "
                   f"{', '.join(gone)}" if gone else ""),
                step="outputs", state=f"stack {name} as the update left it",
                fix=f"`fab aws.destroy --stage {inv.stage_name}`, then `fab aws.provision "
                    f"--stage {inv.stage_name}` and `fab deploy` (re-creates the stack and "
                    "registers the hosts)")
        s.change(f"{', '.join(lost)} restored")
    return out, True


def declared_resources(body: str) -> list[str]:
    section = body.partition("\nResources:\n")[2].partition("\nOutputs:\n")[0]
    return re.findall(r"^  (\w+):", section, re.M)


def tracked(cf, name: str) -> list[str]:
    """The logical ids of the resources the stack tracks (the sandbox's engine lists a
    resource it dropped without one)."""
    res = cf.describe_stack_resources(StackName=name)["StackResources"]
    return [r["LogicalResourceId"] for r in res if r.get("LogicalResourceId")]
