"""The diagram's live state: the stack's outputs and each web host's target health."""

from __future__ import annotations

from urllib.parse import urlparse

from railsfab.errors import RailsfabError
from railsfab.inventory import Inventory


def live_state(inv: Inventory) -> tuple[dict | None, dict | None, str | None]:
    """(stack outputs, target health per web host, why AWS could not be read).

    Never raises for AWS trouble: the diagram is still drawn, from hosts.yaml alone.
    """
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError

    from railsfab import aws, rolling, stack
    from railsfab.local import port_open

    a = inv.stage.aws
    if not (a.stack_name or a.target_group_arn):
        return {}, None, None  # nothing of this stage lives on AWS
    url = aws.clients(inv).endpoint_url
    if url:  # the sandbox's endpoint: a stopped one would hang boto3 in retries
        u = urlparse(url)
        port = u.port or (443 if u.scheme == "https" else 80)
        if not port_open(u.hostname or "", port, timeout=2):
            return None, None, f"AWS endpoint {url} not reachable"
    try:
        outputs = stack.outputs(inv)
        try:
            tg = rolling.TargetGroup(inv, outputs if outputs.get("TargetGroupArn") else None)
        except RailsfabError:  # the stack lacks its target group: drawn as not provisioned
            return outputs, None, None
        outputs = {**outputs, "_front": _front(aws.clients(inv).elbv2, tg.arn)}
        states = tg.health()
        health = {}
        for h in inv.hosts(role="web"):
            try:
                health[h.name] = states.get(tg.target(h)["Id"], "not registered")
            except RailsfabError:
                health[h.name] = "unknown"  # no instance id for it: cannot tell
        return outputs, health, None
    # Something that answers but is not AWS (a proxy, a half-started moto) gives a
    # ResponseParserError, which is no BotoCoreError.
    except (BotoCoreError, ClientError, ResponseParserError, OSError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        return None, None, f"AWS not reached ({aws.clients(inv).endpoint_url or a.region}): {first}"


def _front(elbv2, tg_arn: str) -> dict:
    """What the ALB does in front of the target group, as AWS says: its listeners (protocol,
    port, forward or redirect) and the target group's health check path."""
    tg = elbv2.describe_target_groups(TargetGroupArns=[tg_arn])["TargetGroups"][0]
    listeners = []
    for lb in tg.get("LoadBalancerArns") or []:
        for ls in elbv2.describe_listeners(LoadBalancerArn=lb)["Listeners"]:
            act = (ls.get("DefaultActions") or [{}])[0]
            if act.get("Type") == "redirect":
                r = act.get("RedirectConfig") or {}
                what = f"redirect to {r.get('Protocol', '')} :{r.get('Port', '')}"
            else:
                what = act.get("Type", "forward")
            listeners.append((ls["Port"], f"{ls['Protocol']} :{ls['Port']} → {what}"))
    return {"health_path": tg.get("HealthCheckPath") or "/",
            "listeners": [said for _, said in sorted(listeners, reverse=True)]}
