"""The stack's app security group and instance profile, attached to each web host's EC2
instance before a deploy rolls (the stack only creates them: until they are attached, "80
only from the ALB" and the instance role are true of no host).

`plan` decides from what EC2 says about one instance, purely; `ensure` reads, applies and
reports one step per host. The instance's other security groups are kept; a call is made
only for what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from railsfab.errors import RailsfabError
from railsfab.executor import HostRun, parallel
from railsfab.session import Session

STEP = "sg + profile"
FIX = ("the deploying identity needs ec2:ModifyInstanceAttribute, "
       "ec2:AssociateIamInstanceProfile, ec2:ReplaceIamInstanceProfileAssociation and "
       "iam:PassRole on the stack's app role")


@dataclass(frozen=True)
class Attachment:
    instance: str
    groups: tuple[str, ...] | None  # every group the instance should have; None: it has them
    profile: str  # the stack's instance profile ARN
    replace: str | None  # the association of another profile to replace
    associate: bool  # the instance has no profile: associate the stack's
    said: tuple[str, ...]  # what changes, or what is in place

    @property
    def changes(self) -> bool:
        return self.groups is not None or self.associate or self.replace is not None


def plan(instance: dict, association: dict | None, *, sg: str, sg_vpc: str,
         profile: str) -> Attachment:
    """What one instance lacks. `association`: its current instance profile association."""
    iid = instance["InstanceId"]
    if instance.get("VpcId") and instance["VpcId"] != sg_vpc:
        raise RailsfabError(
            f"{iid} is in {instance['VpcId']}, the stack's app security group {sg} in "
            f"{sg_vpc}: a security group attaches only to instances of its own VPC",
            step=STEP, fix="provision the stack in the hosts' VPC (aws.vpc_id, subnet_ids, "
                           "route_table_ids), then `fab aws.provision`")
    have = [g["GroupId"] for g in instance.get("SecurityGroups", [])]
    said, groups = [], None
    if sg in have:
        said.append(f"app group {sg}")
    else:
        groups = (*have, sg)
        said.append(f"app group {sg} attached"
                    + (f" (kept {', '.join(have)})" if have else ""))
    current = (association or {}).get("IamInstanceProfile", {}).get("Arn")
    name = _name(profile)
    replace = None
    if current is None:
        said.append(f"profile {name} associated")
    elif current != profile:
        replace = association["AssociationId"]
        said.append(f"profile {name} replaced {_name(current)}")
    else:
        said.append(f"profile {name}")
    return Attachment(iid, groups, profile, replace, current is None, tuple(said))


def _name(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def ensure(session: Session, *, dry: bool = False) -> None:
    """One step per web host (after the facts, before anything changes on them); raises the
    first failure, having changed nothing on the hosts."""
    from botocore.exceptions import ClientError

    from railsfab import aws, outputs
    from railsfab.instances import Instances

    inv, rep = session.inv, session.rep
    if not inv.stage.aws.stack_name:
        with rep.step("aws", STEP) as s:
            s.ok("no stack in this stage (aws.stack_name): no security group to attach")
        return
    try:  # a stack that lacks them stops the deploy here, before anything changes
        out = outputs.required(inv, ("AppSecurityGroupId", "InstanceProfileArn"))
    except RailsfabError as exc:
        exc.state = exc.state or session.serving()
        raise
    c = aws.clients(inv)
    sg = out["AppSecurityGroupId"]
    sg_vpc = c.ec2.describe_security_groups(GroupIds=[sg])["SecurityGroups"][0]["VpcId"]
    found = Instances(inv, c)

    def one(r: HostRun) -> None:
        try:
            _one(r)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            denied = "Unauthorized" in code or "AccessDenied" in code
            raise RailsfabError(f"AWS: {exc}", step=STEP, fix=FIX if denied else
                                "check the host's instance_id in hosts.yaml and aws.region"
                                ) from None

    def _one(r: HostRun) -> None:
        with rep.step(r.name, STEP) as s:
            iid = found.id(r.host, r.conn, step=STEP,
                           recorded=r.facts.instance_id if r.facts else None)
            if iid is None:
                return s.ok(f"no EC2 instance found for {found.ip(r.host, r.conn, STEP)}: "
                            "nothing to attach (if it is one, set its instance_id)")
            att = plan(_instance(c.ec2, iid), _association(c.ec2, iid), sg=sg, sg_vpc=sg_vpc,
                       profile=out["InstanceProfileArn"])
            said = f"{iid}: {'; '.join(att.said)}"
            if not att.changes:
                return s.ok(said)
            if not dry:
                _apply(c.ec2, att)
            s.change(f"would attach: {said}" if dry else said)

    parallel(one, session.runs.values(), STEP)
    session.raise_if_failed()


def _instance(ec2, iid: str) -> dict:
    return ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]


def _association(ec2, iid: str) -> dict | None:
    found = ec2.describe_iam_instance_profile_associations(Filters=[
        {"Name": "instance-id", "Values": [iid]},
        {"Name": "state", "Values": ["associating", "associated"]},
    ])["IamInstanceProfileAssociations"]
    return found[0] if found else None


def _apply(ec2, att: Attachment) -> None:
    if att.groups is not None:
        ec2.modify_instance_attribute(InstanceId=att.instance, Groups=list(att.groups))
    if att.replace is not None:
        ec2.replace_iam_instance_profile_association(
            AssociationId=att.replace, IamInstanceProfile={"Arn": att.profile})
    elif att.associate:
        ec2.associate_iam_instance_profile(InstanceId=att.instance,
                                           IamInstanceProfile={"Arn": att.profile})
