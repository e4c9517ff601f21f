"""AWS against the sandbox's moto server over HTTP: the stack, rolling registration, S3."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest

from railsfab import aws, stack
from tests.conftest import run_fab
from tests.upload import png, upload


@pytest.fixture(scope="module")
def provisioned(stages):
    """The stack (provisioned for every state), hosts on unicorn registered through it."""
    return stages.unicorn(alb=True)


@pytest.fixture(scope="module")
def clients(inv):
    return aws.clients(inv)


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


def test_deploy_rolls_host_by_host_through_the_target_group(provisioned, stage_file, inv,
                                                            clients):
    app = inv.resolve(inv.stage.app.source)
    view = app / "app/views/photos/index.html.erb"
    view.write_text(view.read_text() + "\n<p>rolled</p>\n")
    r = run_fab(stage_file, "deploy")
    assert r.returncode == 0, r.stdout + r.stderr
    steps = [(m.group(1), m.group(2)) for m in re.finditer(
        r"^\s+(web\d)\s+\w+\s+(deregister|unicorn|register)\s{2,}", r.stdout, re.M)]
    assert steps == [("web1", "deregister"), ("web1", "unicorn"), ("web1", "register"),
                     ("web2", "deregister"), ("web2", "unicorn"), ("web2", "register")]
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
    r = run_fab(stage_file, "restart-unicorn", "--only", host)
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


def test_changed_setting_updates_and_destroy_then_recreate_work(provisioned, stage_file,
                                                                clients, inv):
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
    refused = run_fab(stage_file, "aws.destroy")  # no stdin: not confirmed, nothing deleted
    assert refused.returncode != 0 and "nothing deleted" in refused.stdout
    gone = run_fab(stage_file, "aws.destroy", "--yes")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert "deleted" in gone.stdout
    again = run_fab(stage_file, "aws.provision")  # nothing left behind blocks a new stack
    assert again.returncode == 0 and "created" in again.stdout, again.stdout + again.stderr
    assert run_fab(stage_file, "deploy").returncode == 0  # registers the hosts again
