"""A stage's web hosts read from AWS (`hosts_from` in hosts.yaml), at the start of every
command: EC2 instances by tag, an Auto Scaling group's InService instances, or a target
group's targets. Each becomes a host (its Name tag, else its instance id; its private or
public address; its instance id and AZ) beside the hosts the stage lists (the db, a web host
that migrates): a listed host that is also found stays as listed. One progress line says
where the list came from.

Host keys stay strict: an instance whose address is not in the project's known_hosts is
refused before any SSH, with the fingerprints its console output shows (cloud-init prints
them at first boot) and how to add the verified line.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable

from railsfab.errors import RailsfabError
from railsfab.inventory import Host, Inventory

NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")  # inventory.Name: a host name in railsfab
FINGERPRINTS = re.compile(r"-----BEGIN SSH HOST KEY FINGERPRINTS-----(.*?)"
                          r"-----END SSH HOST KEY FINGERPRINTS-----", re.S)


class Instance(Host):
    """A web host found in AWS."""

    az: str = ""
    launched: str = ""  # ISO time: the oldest tagged instance migrates when no listed host does
    may_migrate: bool = False  # it carries hosts_from.migrate_tag


def resolve(inv: Inventory, say: Callable[[str], None]) -> None:
    """Replace the stage's hosts with the listed ones plus the instances `hosts_from` finds;
    say where they came from. Raises RailsfabError (nothing found, unknown host keys)."""
    hf = inv.stage.hosts_from
    if hf is None:
        return
    from railsfab import aws  # boto3: only for stages that read their hosts from AWS

    c = aws.clients(inv)
    vpc = stage_vpc(inv, c)
    records = find(c, inv)
    refused = [f"{i['InstanceId']} (in {i.get('VpcId') or 'no VPC'}, not the stage's {vpc})"
               for i in records if vpc is not None and i.get("VpcId") != vpc]
    refused_said = f"; refused: {', '.join(refused)}" if refused else ""
    found = [_instance(i, hf.address, inv) for i in records
             if vpc is None or i.get("VpcId") == vpc]
    hosts = combine(inv.stage.hosts, found)
    web = [h for h in hosts if "web" in h.roles]
    if not web:
        raise RailsfabError(
            f"hosts_from {hf.describe()} found no running instance in {inv.stage.aws.region}"
            + (f" ({inv.stage.aws.endpoint_url})" if inv.stage.aws.endpoint_url else "")
            + refused_said,
            step="hosts", fix=_fix_nothing(inv))
    inv.stage = inv.stage.model_copy(update={"hosts": hosts})
    say(line(inv, hosts) + refused_said)
    refuse_unknown_keys(inv, c, [h for h in hosts if isinstance(h, Instance)])


def stage_vpc(inv: Inventory, c) -> str | None:
    """The stage's VPC: aws.vpc_id, the sandbox's, else that of the stack's target group.
    An instance elsewhere carrying the tag (or in the group) is not the stage's: it would be
    given the env file, with every secret. None when the stage names no VPC and no stack."""
    from railsfab import stack

    a = inv.stage.aws
    if a.vpc_id:
        return a.vpc_id
    if inv.stage.sandbox:
        try:  # the records of `fab sandbox.up` for this stage (another stage's sandbox: none)
            return stack.network_ids(inv)["vpc_id"]
        except RailsfabError:
            pass
    if not (a.target_group_arn or a.stack_name):
        return None
    arn = a.target_group_arn or stack.outputs(inv).get("TargetGroupArn")
    if not arn:
        return None
    return c.elbv2.describe_target_groups(TargetGroupArns=[arn])["TargetGroups"][0]["VpcId"]


def find(c, inv: Inventory) -> list[dict]:
    """The running EC2 instances `hosts_from` names (describe_instances' records)."""
    hf = inv.stage.hosts_from
    if hf.tag is not None:
        filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in hf.tag.items()]
        return _describe(c, filters)
    if hf.auto_scaling_group:
        groups = c.client("autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=[hf.auto_scaling_group])["AutoScalingGroups"]
        if not groups:
            raise RailsfabError(
                f"no Auto Scaling group {hf.auto_scaling_group} in {inv.stage.aws.region}",
                step="hosts", fix=f"check hosts_from.auto_scaling_group and aws.region of "
                                  f"stage {inv.stage_name} in {inv.path.name}")
        return _by_ids(c, "instance-id", [i["InstanceId"] for i in groups[0]["Instances"]
                                          if i.get("LifecycleState") == "InService"])
    return _from_target_group(c, inv)


def _from_target_group(c, inv: Inventory) -> list[dict]:
    hf = inv.stage.hosts_from
    arn = hf.target_group
    if arn == "stack":
        from railsfab import stack

        arn = inv.stage.aws.target_group_arn or stack.outputs(inv).get("TargetGroupArn")
        if not arn:
            raise RailsfabError(
                f"hosts_from.target_group is the stack's, but stack {inv.stage.aws.stack_name} "
                "has no TargetGroupArn output (not provisioned?)", step="hosts",
                fix=f"`fab aws.provision --stage {inv.stage_name}`, or give the target "
                    f"group's ARN in {inv.path.name}")
    targets = [t for t in c.elbv2.describe_target_health(TargetGroupArn=arn)
               ["TargetHealthDescriptions"] if t["TargetHealth"]["State"] != "draining"]
    ids = [t["Target"]["Id"] for t in targets]
    kind = "instance-id" if ids and ids[0].startswith("i-") else "private-ip-address"
    return _by_ids(c, kind, ids)


def _by_ids(c, kind: str, ids: list[str]) -> list[dict]:
    """Instances by id or IP, 200 at a time (EC2's limit of values per filter)."""
    return [i for at in range(0, len(ids), 200)
            for i in _describe(c, [{"Name": kind, "Values": ids[at:at + 200]}])]


def _describe(c, filters: list[dict]) -> list[dict]:
    pages = c.ec2.get_paginator("describe_instances").paginate(Filters=[
        *filters, {"Name": "instance-state-name", "Values": ["running"]}])
    return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]


def _instance(i: dict, address: str, inv: Inventory) -> Instance:
    tags = {t["Key"]: t["Value"] for t in i.get("Tags", [])}
    key = "PrivateIpAddress" if address == "private" else "PublicIpAddress"
    if not i.get(key):
        raise RailsfabError(
            f"instance {i['InstanceId']} has no {address} address", step="hosts",
            fix=f"set hosts_from.address: {'public' if address == 'private' else 'private'} "
                f"for stage {inv.stage_name} in {inv.path.name}, or reach it another way")
    name = tags.get("Name", "")
    launched = i.get("LaunchTime")
    wanted = inv.stage.hosts_from.migrate_tag if inv.stage.hosts_from else {}
    return Instance(name=name if NAME.match(name) else i["InstanceId"], address=i[key],
                    roles=["web"], instance_id=i["InstanceId"],
                    az=i.get("Placement", {}).get("AvailabilityZone", ""),
                    launched=launched.isoformat() if launched else "",
                    may_migrate=bool(wanted) and all(tags.get(k) == v
                                                     for k, v in wanted.items()))


def combine(listed: list[Host], found: list[Instance]) -> list[Host]:
    """The listed hosts, then the instances not listed (by instance id or address), named by
    their Name tag where it is a host name no other host has, else by instance id. When no
    host has role migrate, the oldest instance carrying hosts_from.migrate_tag (then by name)
    migrates; none other ever does."""
    by_id = {h.instance_id: i for i, h in enumerate(listed) if h.instance_id}
    by_address = {h.address: i for i, h in enumerate(listed)}
    hosts = list(listed)
    new: list[Instance] = []
    for inst in found:
        at = by_id.get(inst.instance_id, by_address.get(inst.address))
        if at is None:
            new.append(inst)
        elif not hosts[at].instance_id:
            hosts[at] = hosts[at].model_copy(update={"instance_id": inst.instance_id})
    taken = [h.name for h in listed] + [i.name for i in new]
    new = [i if taken.count(i.name) == 1 else i.model_copy(update={"name": i.instance_id})
           for i in new]
    tagged = [i for i in new if i.may_migrate]
    if tagged and not any("migrate" in h.roles for h in hosts):
        first = min(tagged, key=lambda i: (i.launched, i.name))
        new = [i.model_copy(update={"roles": ["web", "migrate"]}) if i is first else i
               for i in new]
    return hosts + sorted(new, key=lambda i: _natural(i.name))


def _natural(name: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def line(inv: Inventory, hosts: list[Host]) -> str:
    """The one progress line: where the list came from, each host found, the listed ones."""
    hf, aws = inv.stage.hosts_from, inv.stage.aws
    found = [h for h in hosts if isinstance(h, Instance)]
    listed = [h.name for h in hosts if not isinstance(h, Instance)]
    where = aws.endpoint_url or aws.region
    shown = ", ".join(f"{h.name} ({h.instance_id}, {h.address}, {h.az or '?'})" for h in found)
    said = f"  hosts    {hf.describe()} in {where}: {len(found)} found"
    said += f": {shown}" if found else ""
    said += f"; listed: {', '.join(listed)}" if listed else ""
    migrator = next((h.name for h in hosts if "migrate" in h.roles), None)
    if migrator is None:
        return said + (f"; no host migrates (none listed with role migrate, none tagged "
                       f"{hf.migrate_tag_said()})")
    return said + (f"; {migrator} migrates" if migrator in {h.name for h in found} else "")


def _fix_nothing(inv: Inventory) -> str:
    hf = inv.stage.hosts_from
    tags = ", ".join(f"{k}={v}" for k, v in (hf.tag or {}).items())
    what = {"tag": f"tag the web instances {tags}",
            "auto_scaling_group": "check the group's instances (InService)",
            "target_group": "register the web instances with the target group"}[hf.source]
    return (f"{what} (running), check aws.region of stage {inv.stage_name}, or list web hosts "
            f"under hosts in {inv.path.name}")


# --- host keys ------------------------------------------------------------------------


def unknown_keys(inv: Inventory, hosts: list[Host]) -> list[Host]:
    """The hosts whose address (and port) has no line in the project's known_hosts."""
    import paramiko

    keys = paramiko.HostKeys()
    if inv.known_hosts.exists():
        keys.load(str(inv.known_hosts))
    out = []
    for h in hosts:
        port = inv.ssh_port(h)
        if keys.lookup(h.address if port == 22 else f"[{h.address}]:{port}") is None:
            out.append(h)
    return out


def refuse_unknown_keys(inv: Inventory, c, hosts: list[Host]) -> None:
    missing = unknown_keys(inv, hosts)
    if not missing:
        return
    known = inv.known_hosts
    lines = [f"{len(missing)} host(s) from {inv.stage.hosts_from.describe()} not in {known}; "
             "unknown host keys are refused:"]
    for h in missing:
        prints = [] if inv.stage.sandbox else console_fingerprints(c, h.instance_id)
        seen = ("its console shows " + ", ".join(prints)) if prints else (
            "no fingerprints in its console output (yet)" if not inv.stage.sandbox else
            "a sandbox host (sandbox.up writes its key)")
        lines.append(f"{h.name} ({h.instance_id}, {h.address}): {seen}")
    if inv.stage.sandbox:
        fix = f"`fab sandbox.up --stage {inv.stage_name}` records its hosts' keys in {known}"
    else:
        a = missing[0].address
        fix = (f"for each: `ssh-keyscan -t ed25519 {a} > /tmp/k && ssh-keygen -lf /tmp/k`; "
               f"when it shows the console's fingerprint, `cat /tmp/k >> {known}` "
               "(the console: EC2 > Instance > Monitor and troubleshoot > Get system log)")
    raise RailsfabError("\n".join(lines), step="hosts", fix=fix)


def console_fingerprints(c, instance_id: str | None) -> list[str]:
    """The SSH host key fingerprints cloud-init printed to the instance's console, as
    "SHA256:... (ED25519)"; [] when the console has none (or cannot be read)."""
    if not instance_id:
        return []
    try:
        out = c.ec2.get_console_output(InstanceId=instance_id).get("Output") or ""
    except Exception:  # noqa: BLE001 - the fingerprints are a help, not a requirement
        return []
    return parse_fingerprints(_decoded(out))


def _decoded(out: str) -> str:
    try:
        return base64.b64decode(out, validate=True).decode(errors="replace")
    except ValueError:
        return out  # already text


def parse_fingerprints(console: str) -> list[str]:
    m = FINGERPRINTS.search(console)
    if not m:
        return []
    found = []
    for ln in m.group(1).splitlines():
        fp = re.search(r"\b(SHA256:[A-Za-z0-9+/=]+|MD5(:[0-9a-f]{2}){16}|([0-9a-f]{2}:){15}"
                       r"[0-9a-f]{2})\b.*?(\(([A-Z0-9-]+)\))?\s*$", ln)
        if fp:
            found.append(fp.group(1) + (f" ({fp.group(5)})" if fp.group(5) else ""))
    return found
