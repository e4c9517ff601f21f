"""AWS against the sandbox's moto server over HTTP: the stack, rolling registration, S3, the
endpoint policy, security groups and instance profile on the hosts, destroy."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest

from railsfab import aws, stack
from tests.conftest import run_fab
from tests.upload import png, upload


def test_second_provision_changes_nothing_and_nothing_is_duplicated(provisioned, stage_file,
                                                                    clients, inv):
    again = run_fab(stage_file, "aws.provision")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "no change" in again.stdout and "up to date, no changes" in again.stdout
    names = stack.names(inv)
    lbs = [lb for lb in clients.elbv2.describe_load_balancers()["LoadBalancers"]
           if lb["LoadBalancerName"] == names["alb"]]
    assert len(lbs) == 1
    tgs = [t for t in clients.elbv2.describe_target_groups()["TargetGroups"]
           if t["TargetGroupName"] == names["target_group"]]
    assert len(tgs) == 1
    assert tgs[0]["HealthCheckPath"] == "/up" and tgs[0]["Matcher"]["HttpCode"] == "200"
    listeners = clients.elbv2.describe_listeners(LoadBalancerArn=lbs[0]["LoadBalancerArn"])
    assert [ls["Port"] for ls in listeners["Listeners"]] == [80]
    attrs = {a["Key"]: a["Value"] for a in clients.elbv2.describe_target_group_attributes(
        TargetGroupArn=tgs[0]["TargetGroupArn"])["Attributes"]}
    assert attrs["deregistration_delay.timeout_seconds"] == "30"
    bucket = inv.stage.aws.bucket
    assert clients.s3.get_public_access_block(Bucket=bucket)[
        "PublicAccessBlockConfiguration"]["BlockPublicAcls"] is True


def test_app_security_group_takes_http_only_from_the_alb(provisioned, clients, inv):
    out = stack.outputs(inv)
    sg = clients.ec2.describe_security_groups(GroupIds=[out["AppSecurityGroupId"]])
    rules = {p["FromPort"]: p for p in sg["SecurityGroups"][0]["IpPermissions"]}
    assert [g["GroupId"] for g in rules[80]["UserIdGroupPairs"]] == [out["AlbSecurityGroupId"]]
    assert rules[80].get("IpRanges", []) == []
    assert [r["CidrIp"] for r in rules[22]["IpRanges"]] == [inv.stage.aws.admin_cidr]


def test_bucket_policy_document_round_trips(provisioned, clients):
    clients.s3.create_bucket(Bucket="itest-policy", CreateBucketConfiguration={
        "LocationConstraint": clients.region})
    policy = stack.bucket_policy("itest-policy", "vpce-0123", endpoint_only=True)
    assert stack._ensure_bucket_policy(clients.s3, "itest-policy", policy) is True
    assert stack._ensure_bucket_policy(clients.s3, "itest-policy", policy) is False
    stored = json.loads(clients.s3.get_bucket_policy(Bucket="itest-policy")["Policy"])
    assert stored == policy
    tls, vpce = stored["Statement"]
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert vpce["Condition"] == {"StringNotEquals": {"aws:SourceVpce": "vpce-0123"}}


def test_deploy_rolls_canary_first_through_the_target_group(provisioned, stage_file, inv,
                                                             clients):
    app = inv.resolve(inv.stage.app.source)
    view = app / "app/views/photos/index.html.erb"
    view.write_text(view.read_text() + "\n<p>rolled</p>\n")
    r = run_fab(stage_file, "deploy")
    assert r.returncode == 0, r.stdout + r.stderr
    steps = [(m.group(1), m.group(2)) for m in re.finditer(
        r"^\s+(web\d)\s+\w+\s+(deregister|unicorn|register)\s{2,}", r.stdout, re.M)]
    # the canary drained for its handover and gate; web2's USR2 handover stays in service
    assert steps == [("web1", "deregister"), ("web1", "unicorn"), ("web1", "register"),
                     ("web2", "unicorn")]
    tg = stack.outputs(inv)["TargetGroupArn"]
    states = [t["TargetHealth"]["State"] for t in clients.elbv2.describe_target_health(
        TargetGroupArn=tg)["TargetHealthDescriptions"]]
    assert states == ["healthy", "healthy"]
    status = run_fab(stage_file, "aws.status")
    assert status.stdout.count("healthy") >= 2


def test_last_healthy_target_is_never_deregistered(provisioned, stage_file, inv, clients):
    tg = stack.outputs(inv)["TargetGroupArn"]
    web2 = next(t for t in clients.elbv2.describe_target_health(TargetGroupArn=tg)[
        "TargetHealthDescriptions"])["Target"]
    ids = {t["Target"]["Id"] for t in clients.elbv2.describe_target_health(
        TargetGroupArn=tg)["TargetHealthDescriptions"]}
    # Leave only one healthy target, then restart exactly that host.
    others = [i for i in ids if i != web2["Id"]]
    clients.elbv2.deregister_targets(TargetGroupArn=tg, Targets=[{"Id": i, "Port": 80}
                                                                  for i in others])
    host = next(h.name for h in inv.hosts(role="web")
                if aws_lookup(clients, h.address) == web2["Id"])
    # a full restart (a handover would stay in service anyway)
    r = run_fab(stage_file, "restart-unicorn", "--hard", "--only", host)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "kept registered: it is the last healthy target" in r.stdout
    health = clients.elbv2.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
    assert [t["TargetHealth"]["State"] for t in health] == ["healthy"]
    assert run_fab(stage_file, "deploy").returncode == 0  # registers the other host again
    health = clients.elbv2.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
    assert sorted(t["TargetHealth"]["State"] for t in health) == ["healthy", "healthy"]


def aws_lookup(clients, ip: str) -> str:
    res = clients.ec2.describe_instances(Filters=[{"Name": "private-ip-address",
                                                   "Values": [ip]}])["Reservations"]
    return res[0]["Instances"][0]["InstanceId"]


def test_upload_on_web1_lands_in_s3_and_is_served_by_web2(provisioned, inv, clients):
    web1, web2 = (h.address for h in inv.hosts(role="web"))
    image = png()
    path = upload(web1, "round trip", image)
    keys = [o["Key"] for o in clients.s3.list_objects_v2(
        Bucket=inv.stage.aws.bucket).get("Contents", [])]
    assert keys, "the upload did not reach the bucket"
    page = urllib.request.urlopen(f"http://{web2}{path}", timeout=10).read().decode()
    src = next(s for s in re.findall(r'<img[^>]+src="([^"]+)"', page) if "active_storage" in s)
    assert "/proxy/" in src  # served through the app (proxy mode), not a presigned S3 URL
    with urllib.request.urlopen(f"http://{web2}{src}", timeout=10) as r:
        assert r.status == 200 and r.read() == image


def test_changed_setting_updates_the_stack(provisioned, stage_file, clients, inv):
    import yaml

    original = stage_file.read_text()
    doc = yaml.safe_load(original)
    doc["stages"][inv.stage_name]["aws"]["admin_cidr"] = "10.232.0.2/32"
    try:
        stage_file.write_text(yaml.safe_dump(doc))
        r = run_fab(stage_file, "aws.provision")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "updated" in r.stdout
        sg = stack.outputs(inv)["AppSecurityGroupId"]
        rules = clients.ec2.describe_security_groups(GroupIds=[sg])["SecurityGroups"][0]
        assert ["10.232.0.2/32"] == [r["CidrIp"] for p in rules["IpPermissions"]
                                     if p["FromPort"] == 22 for r in p["IpRanges"]]
    finally:
        stage_file.write_text(original)
    assert "updated" in run_fab(stage_file, "aws.provision").stdout  # back to the original


# --- the stack's outputs are required; the health check path follows app.health_path -----

def test_the_s3_endpoint_reaches_only_the_stages_bucket(provisioned, clients, inv):
    vpce = stack.outputs(inv)["VpcEndpointId"]
    stored = clients.ec2.describe_vpc_endpoints(VpcEndpointIds=[vpce])["VpcEndpoints"][0]
    policy = json.loads(stored["PolicyDocument"])
    assert policy == stack.endpoint_policy(inv)
    bucket = inv.stage.aws.bucket
    assert [s["Resource"] for s in policy["Statement"]] == [
        [f"arn:aws:s3:::{bucket}/*"], [f"arn:aws:s3:::{bucket}"]]


def flat(out: str) -> str:
    """fab's output with its columns and wrapped lines as single spaces."""
    return " ".join(out.split())


def instance_of(clients, ip: str) -> dict:
    res = clients.ec2.describe_instances(Filters=[{"Name": "private-ip-address",
                                                   "Values": [ip]}])["Reservations"]
    return res[0]["Instances"][0]


def groups_of(clients, iid: str) -> list[str]:
    inst = clients.ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    return [g["GroupId"] for g in inst["SecurityGroups"]]


def association_of(clients, iid: str) -> dict | None:
    found = clients.ec2.describe_iam_instance_profile_associations(Filters=[
        {"Name": "instance-id", "Values": [iid]},
        {"Name": "state", "Values": ["associating", "associated"]},
    ])["IamInstanceProfileAssociations"]
    return found[0] if found else None


def test_deploy_attaches_the_app_group_and_profile_once_keeping_other_groups(
        provisioned, stage_file, inv, clients):
    out = stack.outputs(inv)
    app_sg, profile = out["AppSecurityGroupId"], out["InstanceProfileArn"]
    vpc = clients.ec2.describe_security_groups(GroupIds=[app_sg])["SecurityGroups"][0]["VpcId"]
    ops = clients.ec2.create_security_group(GroupName="itest-ops", VpcId=vpc,
                                            Description="the operator's own")["GroupId"]
    ids = {h.name: instance_of(clients, h.address)["InstanceId"] for h in inv.hosts(role="web")}
    try:
        for iid in ids.values():  # as launched: a group of the operator's, no profile
            clients.ec2.modify_instance_attribute(InstanceId=iid, Groups=[ops])
            a = association_of(clients, iid)
            if a:
                clients.ec2.disassociate_iam_instance_profile(AssociationId=a["AssociationId"])
        r = run_fab(stage_file, "deploy")
        assert r.returncode == 0, r.stdout + r.stderr
        for name, iid in ids.items():
            assert (f"{name} changed sg + profile" in flat(r.stdout)
                    and f"{iid}: app group {app_sg} attached (kept {ops}); profile "
                    f"{profile.rsplit('/', 1)[-1]} associated" in flat(r.stdout)), r.stdout
            assert groups_of(clients, iid) == [ops, app_sg]
            assert association_of(clients, iid)["IamInstanceProfile"]["Arn"] == profile
        # Before the roll and before anything changes on the hosts.
        first = r.stdout.index("sg + profile")
        assert first < r.stdout.index(" packages ") and first < r.stdout.index(" target ")
        again = run_fab(stage_file, "deploy")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "0 changed" in again.stdout
        for name, iid in ids.items():
            assert re.search(rf"{name} ok sg \+ profile [\d.]+s {iid}: app group {app_sg}; "
                             "profile", flat(again.stdout)), again.stdout
            assert groups_of(clients, iid) == [ops, app_sg]
    finally:
        for iid in ids.values():
            clients.ec2.modify_instance_attribute(InstanceId=iid, Groups=[app_sg])
        clients.ec2.delete_security_group(GroupId=ops)


def sg_verdict(stage_file, host: str) -> dict:
    r = run_fab(stage_file, "check", "--json")
    return next(v for v in json.loads(r.stdout)[host] if v["layer"] == "security groups")


@pytest.mark.parametrize("rule, said, fix", [
    ({"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
     ":22 (SSH) of {iid} is open to 0.0.0.0/0 through {sg}",
     "aws ec2 revoke-security-group-ingress --group-id {sg} --protocol tcp --port 22 "
     "--cidr 0.0.0.0/0"),
    ({"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
     ":80 of {iid} is open to 10.0.0.0/8 through {sg}",
     "--port 80 --cidr 10.0.0.0/8"),
])
def test_check_flags_a_rule_that_opens_the_hosts_and_is_green_once_revoked(
        provisioned, stage_file, inv, clients, rule, said, fix):
    sg = stack.outputs(inv)["AppSecurityGroupId"]
    assert sg_verdict(stage_file, "web1")["status"] == "ok"
    clients.ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[rule])
    try:
        r = run_fab(stage_file, "check", "--json")
    finally:
        clients.ec2.revoke_security_group_ingress(GroupId=sg, IpPermissions=[rule])
    assert r.returncode == 1, r.stdout + r.stderr
    result = json.loads(r.stdout)
    for h in inv.hosts(role="web"):
        iid = instance_of(clients, h.address)["InstanceId"]
        broken = next(v for v in result[h.name] if v["status"] == "FAIL")
        assert broken["layer"] == "security groups", broken
        assert said.format(iid=iid, sg=sg) in broken["detail"], broken
        assert fix.format(sg=sg) in broken["fix"], broken
    green = run_fab(stage_file, "check")
    assert green.returncode == 0, green.stdout
    assert "web1: all layers healthy" in green.stdout and "web2: all layers healthy" in green.stdout
    healthy = sg_verdict(stage_file, "web2")
    assert (healthy["status"], ":80 only from the ALB's group" in healthy["detail"]) == \
        ("ok", True), healthy


# --- destroy -------------------------------------------------------------------------------

def foreign_stack(clients, inv, name: str, tag: str, protected: bool) -> tuple[str, str]:
    """A small stack with a bucket holding three objects (made with boto3: moto has no
    update_termination_protection, but keeps EnableTerminationProtection given at create)."""
    stack_name, bucket = f"sample-{name}", f"sample-uploads-{name}"
    body = json.dumps({
        "Parameters": {"BucketName": {"Type": "String"}},
        "Resources": {"Bucket": {"Type": "AWS::S3::Bucket",
                                 "Properties": {"BucketName": {"Ref": "BucketName"}}}},
        "Outputs": {"BucketName": {"Value": {"Ref": "Bucket"}}}})
    clients.cloudformation.create_stack(
        StackName=stack_name, TemplateBody=body, EnableTerminationProtection=protected,
        Parameters=[{"ParameterKey": "BucketName", "ParameterValue": bucket}],
        Tags=[{"Key": aws.TAG, "Value": tag}])
    for i in range(3):
        clients.s3.put_object(Bucket=bucket, Key=f"keep/{i}", Body=b"x")
    return stack_name, bucket


@pytest.mark.parametrize("name, tag, protected, said, fix", [
    ("protected", "itest", True, "stack sample-protected has termination protection on",
     "aws cloudformation update-termination-protection --no-enable-termination-protection "
     "--stack-name sample-protected"),
    ("foreign", "production", False,
     "stack sample-foreign is not stage itest's: its railsfab:stage tag says 'production'",
     "check aws.stack_name of stage itest"),
])
def test_destroy_refuses_another_stages_or_a_protected_stack_touching_nothing(
        provisioned, stages, inv, clients, name, tag, protected, said, fix):
    stack_name, bucket = foreign_stack(clients, inv, name, tag, protected)
    path = stages.variant(f"hosts-{name}.yaml", lambda st: st["aws"].update(
        stack_name=stack_name, bucket=bucket))
    try:
        r = run_fab(path, "aws.destroy", "--yes")
        assert r.returncode == 1, r.stdout + r.stderr
        assert said in r.stdout and fix in r.stdout, r.stdout
        assert "nothing deleted: the bucket and the stack are as they were" in r.stdout
        assert "Traceback" not in r.stdout + r.stderr
        st = stack.describe(clients.cloudformation, stack_name)
        assert st["StackStatus"] == "CREATE_COMPLETE"
        assert clients.s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 3
    finally:
        for i in range(3):
            clients.s3.delete_object(Bucket=bucket, Key=f"keep/{i}")
        clients.cloudformation.delete_stack(StackName=stack_name)  # moto ignores protection


def test_destroy_empties_every_version_behind_the_endpoint_policy_then_recreate_works(
        provisioned, stage_file, clients, inv):
    """Last in this file: the stage's own stack goes (1,005 objects, their versions and
    delete markers in its bucket, the vpc_endpoint_only policy on it), and comes back."""
    from botocore.exceptions import ClientError

    s3, bucket = clients.s3, inv.stage.aws.bucket
    out = stack.outputs(inv)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for i in range(1005):
        s3.put_object(Bucket=bucket, Key=f"uploads/{i:05}", Body=b"v1")
    for i in range(0, 1005, 50):
        s3.put_object(Bucket=bucket, Key=f"uploads/{i:05}", Body=b"v2")
    for i in range(0, 1005, 100):
        s3.delete_object(Bucket=bucket, Key=f"uploads/{i:05}")
    total = sum(len(p.get("Versions", [])) + len(p.get("DeleteMarkers", [])) for p in
                s3.get_paginator("list_object_versions").paginate(Bucket=bucket))
    assert total >= 1005 + 21 + 11  # (earlier tests' uploads are in it too)
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(
        stack.bucket_policy(bucket, out["VpcEndpointId"], endpoint_only=True)))
    # moto denies this caller, as AWS denies anyone outside the endpoint.
    with pytest.raises(ClientError):
        s3.put_object(Bucket=bucket, Key="denied", Body=b"x")
    refused = run_fab(stage_file, "aws.destroy")  # no stdin: not confirmed, nothing deleted
    assert refused.returncode != 0 and "nothing deleted" in refused.stdout
    gone = run_fab(stage_file, "aws.destroy", "--yes")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    for step, said in (("bucket policy", f"removed from {bucket} first"),
                       ("bucket", f"{bucket} emptied: {total} object versions and delete "
                                  "markers deleted"),
                       ("detach", f"{out['AppSecurityGroupId']} from i-"),
                       ("delete stack", f"{inv.stage.aws.stack_name} deleted")):
        assert re.search(rf"aws\s+changed\s+{step}\s.*{re.escape(said)}", gone.stdout), \
            gone.stdout
    assert stack.describe(clients.cloudformation, inv.stage.aws.stack_name) is None
    try:
        left = s3.list_object_versions(Bucket=bucket)
        assert not left.get("Versions") and not left.get("DeleteMarkers")
    except ClientError as exc:  # the stack took the bucket with it
        assert exc.response["Error"]["Code"] == "NoSuchBucket"
    for h in inv.hosts(role="web"):
        iid = instance_of(clients, h.address)["InstanceId"]
        assert out["AppSecurityGroupId"] not in groups_of(clients, iid)
        assert association_of(clients, iid) is None
    again = run_fab(stage_file, "aws.provision")  # nothing left behind blocks a new stack
    assert again.returncode == 0 and "created" in again.stdout, again.stdout + again.stderr
    deployed = run_fab(stage_file, "deploy")  # registers the hosts, attaches the new group
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert len(re.findall(r"^\s+web\d\s+changed\s+sg \+ profile\s", deployed.stdout,
                          re.M)) == 2, deployed.stdout
