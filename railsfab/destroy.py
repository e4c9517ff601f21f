"""`fab aws.destroy`: the stage's stack and everything in it, the bucket's contents included.

Nothing is touched until the stack is known to be this stage's (its railsfab:stage tag) and
deletable (no termination protection, no operation in progress): a refusal leaves the
bucket and the stack as they were. Then the bucket policy goes first (with
aws.vpc_endpoint_only its deny would stop this run, which is outside the VPC endpoint, from
deleting objects), every object version and delete marker is deleted, the app security
group and instance profile come off the instances `fab deploy` gave them to, and the stack
goes.
"""

from __future__ import annotations

import time

from botocore.exceptions import ClientError

from railsfab import aws, stack
from railsfab.errors import ConfigError, RailsfabError
from railsfab.inventory import Inventory
from railsfab.report import Reporter

PAGE = 1000  # the most delete_objects takes in one call
NOTHING = "nothing deleted: the bucket and the stack are as they were"


def refusal(inv: Inventory, st: dict) -> RailsfabError | None:
    """Why the stack described by `st` must not be destroyed for this stage, if it must not."""
    name, stage = st["StackName"], inv.stage_name
    tags = {t["Key"]: t["Value"] for t in st.get("Tags", [])}
    if tags.get(aws.TAG) != stage:
        whose = (f"its {aws.TAG} tag says {tags[aws.TAG]!r}" if aws.TAG in tags
                 else f"it has no {aws.TAG} tag (railsfab did not create it)")
        return RailsfabError(
            f"stack {name} is not stage {stage}'s: {whose}", step="stack", state=NOTHING,
            fix=f"check aws.stack_name of stage {stage} in {inv.path.name}; a stack railsfab "
                "did not create is deleted with the AWS console or CLI, not with railsfab")
    if st.get("EnableTerminationProtection"):
        return RailsfabError(
            f"stack {name} has termination protection on", step="stack", state=NOTHING,
            fix=f"aws cloudformation update-termination-protection "
                f"--no-enable-termination-protection --stack-name {name} "
                f"--region {inv.stage.aws.region}, then `fab aws.destroy` again")
    if st["StackStatus"].endswith("_IN_PROGRESS"):
        return RailsfabError(
            f"stack {name} is {st['StackStatus']}", step="stack", state=NOTHING,
            fix="wait until it finishes (`fab aws.status`), then `fab aws.destroy` again")
    return None


def destroy(inv: Inventory, rep: Reporter) -> None:
    name = inv.stage.aws.stack_name
    if not name:
        raise ConfigError(f"{inv.path.name}: stage {inv.stage_name} has no aws.stack_name: "
                          "there is no stack to destroy")
    c = aws.clients(inv)
    with rep.step("aws", "stack") as s:
        st = stack.describe(c.cloudformation, name)
        if st is None:
            return s.ok(f"{name} does not exist")
        refused = refusal(inv, st)
        if refused:
            raise refused
        s.ok(f"{name}: {aws.TAG}={inv.stage_name}, no termination protection")
    out = stack.outputs(inv)
    bucket = out.get("BucketName")
    if bucket:  # CloudFormation cannot delete a bucket that still holds objects
        _empty(c.s3, bucket, rep)
    _detach(c.ec2, out, rep)
    endpoint = _quietly(lambda: stack.endpoint_id(inv, out))
    with rep.step("aws", "delete stack") as s:
        since = time.time() - 5
        c.cloudformation.delete_stack(StackName=name)
        stack.wait(c.cloudformation, name, rep, {"DELETE_COMPLETE"}, since=since)
        # The sandbox's engine leaves these two behind; on AWS they are already gone.
        if out.get("TargetGroupArn"):
            _quietly(lambda: c.elbv2.delete_target_group(TargetGroupArn=out["TargetGroupArn"]))
        if endpoint:
            _quietly(lambda: c.ec2.delete_vpc_endpoints(VpcEndpointIds=[endpoint]))
        s.change(f"{name} deleted")


def _empty(s3, bucket: str, rep: Reporter) -> None:
    with rep.step("aws", "bucket policy") as s:
        try:
            s3.get_bucket_policy(Bucket=bucket)
        except ClientError as exc:
            if _code(exc) == "NoSuchBucket":
                return s.ok(f"bucket {bucket} is already gone")
            if _code(exc) != "NoSuchBucketPolicy":
                raise
            s.ok(f"{bucket} has none")
        else:
            s3.delete_bucket_policy(Bucket=bucket)
            s.change(f"removed from {bucket} first (its deny would block emptying it "
                     "from outside the VPC endpoint)")
    with rep.step("aws", "bucket") as s:
        n = empty_bucket(s3, bucket, progress=s.progress)
        s.set(n > 0, f"{bucket} emptied: {n} object versions and delete markers deleted"
              if n else f"{bucket} is empty")


def empty_bucket(s3, bucket: str, progress=None) -> int:
    """Delete every object version and delete marker in the bucket (a bucket that was
    never versioned lists each object once, as version "null"); how many were deleted."""
    deleted = 0
    while True:
        # Always the first page again: a continuation marker would point into what was just
        # deleted, and objects written meanwhile (a host still uploading) are found too.
        page = s3.list_object_versions(Bucket=bucket, MaxKeys=PAGE)
        batch = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                 for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        if not batch:
            return deleted
        r = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        if r.get("Errors"):
            e = r["Errors"][0]
            raise RailsfabError(
                f"{bucket}: could not delete {e.get('Key')} (version "
                f"{e.get('VersionId', '-')}): {e.get('Code')} {e.get('Message', '')}",
                step="bucket", state=f"{deleted} deleted; the rest and the stack remain "
                                     "(`fab aws.provision` puts the bucket policy back)",
                fix="your IAM permissions must allow s3:DeleteObject and "
                    "s3:DeleteObjectVersion on the bucket; then `fab aws.destroy` again")
        deleted += len(batch)
        if progress:
            progress(f"{deleted} deleted")


def _detach(ec2, out: dict, rep: Reporter) -> None:
    """The app group and profile off every instance that `fab deploy` gave them: AWS
    refuses to delete a security group an instance still has (the stack would end in
    DELETE_FAILED), and an instance would keep a profile that no longer exists."""
    sg, profile = out.get("AppSecurityGroupId"), out.get("InstanceProfileArn")
    with rep.step("aws", "detach") as s:
        done = []
        if sg:
            for inst in _instances_with(ec2, sg):
                others = [g["GroupId"] for g in inst["SecurityGroups"] if g["GroupId"] != sg]
                # An instance must keep a group: its VPC's default, as it was launched.
                ec2.modify_instance_attribute(InstanceId=inst["InstanceId"],
                                              Groups=others or [_default_sg(ec2, inst)])
                done.append(f"{sg} from {inst['InstanceId']}")
        pages = ec2.get_paginator("describe_iam_instance_profile_associations").paginate(
            Filters=[{"Name": "state", "Values": ["associating", "associated"]}])
        for a in (a for p in pages for a in p["IamInstanceProfileAssociations"]):
            if profile and a["IamInstanceProfile"]["Arn"] == profile:
                ec2.disassociate_iam_instance_profile(AssociationId=a["AssociationId"])
                done.append(f"the instance profile from {a['InstanceId']}")
        s.set(bool(done), "; ".join(done) if done
              else "no instance has the app security group or instance profile")


def _instances_with(ec2, sg: str) -> list[dict]:
    pages = ec2.get_paginator("describe_instances").paginate(Filters=[
        {"Name": "instance.group-id", "Values": [sg]},
        {"Name": "instance-state-name", "Values": ["pending", "running", "stopping",
                                                   "stopped"]}])
    return [i for p in pages for r in p["Reservations"] for i in r["Instances"]]


def _default_sg(ec2, inst: dict) -> str:
    return ec2.describe_security_groups(Filters=[
        {"Name": "vpc-id", "Values": [inst["VpcId"]]},
        {"Name": "group-name", "Values": ["default"]}])["SecurityGroups"][0]["GroupId"]


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _quietly(call):
    try:
        return call()
    except (ClientError, KeyError, RailsfabError):
        return None
