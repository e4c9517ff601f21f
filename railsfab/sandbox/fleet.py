"""The sandbox's side of `hosts_from`: hosts a stage does not list (sandbox.instances) are
booted like the others and recorded in the sandbox's AWS endpoint as EC2 instances with
their tags, members of their Auto Scaling group, so a stage that reads its web hosts from
AWS finds them as it would on EC2.

Tags are added, never removed: a tag put on an instance afterwards (as people do on EC2, to
bring it into a fleet) stays across `fab sandbox.up`.
"""

from __future__ import annotations

import json
from pathlib import Path

from railsfab import aws
from railsfab.inventory import Host, Inventory


def hosts(inv: Inventory) -> list[Host]:
    """Every host the sandbox boots: the stage's, then its unlisted instances (web hosts)."""
    sandbox = inv.stage.sandbox
    extra = [Host(name=i.name, address=i.address, roles=["web"])
             for i in (sandbox.instances if sandbox else [])]
    return [*inv.stage.hosts, *extra]


def aws_records(inv: Inventory, booted: list[Host], ids_file: Path) -> tuple[bool, str]:
    """The EC2 side of the sandbox in its AWS endpoint (VPC, subnets, an instance record per
    web host), then the unlisted instances' tags and groups; the ids go to `ids_file`."""
    c = aws.clients(inv)
    changed, ids = aws.ensure_sandbox_network(
        c, inv.stage_name, inv.stage.sandbox.subnet,
        [(h.name, h.address) for h in booted if "web" in h.roles])
    ids_file.write_text(json.dumps(ids, indent=1))
    tagged, said = record(c, inv, ids["instances"])
    return changed or tagged, (f"VPC {ids['vpc_id']}, subnets, route table, "
                               f"{len(ids['instances'])} instance records; {said}")


def record(c, inv: Inventory, ids: dict) -> tuple[bool, str]:
    """Tags and Auto Scaling groups of the sandbox's instances (ids: name -> instance id, as
    aws.ensure_sandbox_network recorded them). Returns (changed, what)."""
    instances = inv.stage.sandbox.instances if inv.stage.sandbox else []
    if not instances:
        return False, "no unlisted instances"
    ec2 = c.ec2
    have = {i["InstanceId"]: {t["Key"]: t["Value"] for t in i.get("Tags", [])}
            for r in ec2.describe_instances(InstanceIds=[ids[i.name] for i in instances])
            ["Reservations"] for i in r["Instances"]}
    changed = False
    for inst in instances:
        iid = ids[inst.name]
        missing = {k: v for k, v in inst.tags.items() if have[iid].get(k) != v}
        if missing:
            ec2.create_tags(Resources=[iid], Tags=[{"Key": k, "Value": v}
                                                   for k, v in missing.items()])
            changed = True
    groups: dict[str, list[str]] = {}
    for inst in instances:
        if inst.auto_scaling_group:
            groups.setdefault(inst.auto_scaling_group, []).append(ids[inst.name])
    for name, members in groups.items():
        changed = _ensure_group(c, inv, name, members) or changed
    tagged = sum(bool(i.tags) for i in instances)
    said = f"{len(instances)} unlisted instances ({tagged} tagged)"
    return changed, said + (f", Auto Scaling group {', '.join(groups)}" if groups else "")


def _ensure_group(c, inv: Inventory, name: str, members: list[str]) -> bool:
    """The group with these members attached (moto launches nothing for it: desired 0 at
    creation, then exactly the attached instances)."""
    asg = c.client("autoscaling")
    found = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    if not found:
        subnets = ec2_subnets(c, members)
        asg.create_auto_scaling_group(
            AutoScalingGroupName=name, InstanceId=members[0], MinSize=0, DesiredCapacity=0,
            MaxSize=max(16, 2 * len(members)), VPCZoneIdentifier=",".join(subnets),
            Tags=[{"Key": "railsfab:stage", "Value": inv.stage_name,
                   "PropagateAtLaunch": False}])
        have: set[str] = set()
    else:
        have = {i["InstanceId"] for i in found[0]["Instances"]}
    todo = [m for m in members if m not in have]
    if todo:
        asg.attach_instances(AutoScalingGroupName=name, InstanceIds=todo)
    return bool(todo) or not found


def ec2_subnets(c, instance_ids: list[str]) -> list[str]:
    return sorted({i["SubnetId"] for r in c.ec2.describe_instances(InstanceIds=instance_ids)
                   ["Reservations"] for i in r["Instances"]})
