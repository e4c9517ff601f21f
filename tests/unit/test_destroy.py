"""`fab aws.destroy` against moto in-process: every object version and delete marker goes
(more than one page of them), and nothing is touched when the stack is not this stage's,
is protected or busy. moto's delete_stack ignores termination protection, so the refusal
is railsfab's own, read from describe_stacks as on AWS."""

from __future__ import annotations

import json

import pytest
import yaml

from railsfab import aws, destroy, stack
from railsfab.errors import ConfigError, RailsfabError
from railsfab.report import Reporter

REGION = "ap-northeast-1"
BUCKET = "shop-uploads-prod"
TEMPLATE = json.dumps({
    "Resources": {"Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": BUCKET}}},
    "Outputs": {"BucketName": {"Value": {"Ref": "Bucket"}}},
})


@pytest.fixture
def inv(tmp_path, monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"
                 }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    from railsfab import inventory

    doc = {"default_stage": "prod", "stages": {"prod": {
        "hosts": [{"name": "web1", "address": "198.51.100.7"}],
        "app": {"name": "shop", "source": "../shop", "deploy_to": "/srv/shop"},
        "aws": {"region": REGION, "stack_name": "shop-prod", "bucket": BUCKET,
                "admin_cidr": "203.0.113.0/24"}}}}
    (tmp_path / "hosts.yaml").write_text(yaml.safe_dump(doc))
    return inventory.load(tmp_path / "hosts.yaml")


@pytest.fixture
def moto():
    from moto import mock_aws

    with mock_aws():
        yield


def make_stack(inv, stage: str | None = "prod", protected: bool = False):
    c = aws.clients(inv)
    tags = [{"Key": aws.TAG, "Value": stage}] if stage else []
    c.cloudformation.create_stack(StackName="shop-prod", TemplateBody=TEMPLATE, Tags=tags,
                                  EnableTerminationProtection=protected)
    return c


def fill(s3, keys: int = 1005) -> int:
    """`keys` objects in a versioned bucket, some overwritten, some deleted (a delete marker
    over their versions): more entries than one page of list_object_versions."""
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    for i in range(keys):
        s3.put_object(Bucket=BUCKET, Key=f"uploads/{i:05}", Body=b"v1")
    for i in range(0, keys, 50):
        s3.put_object(Bucket=BUCKET, Key=f"uploads/{i:05}", Body=b"v2")
    for i in range(0, keys, 100):
        s3.delete_object(Bucket=BUCKET, Key=f"uploads/{i:05}")
    return keys + len(range(0, keys, 50)) + len(range(0, keys, 100))


def entries(s3) -> int:
    page = s3.list_object_versions(Bucket=BUCKET)
    return len(page.get("Versions", [])) + len(page.get("DeleteMarkers", []))


def test_emptying_deletes_every_version_and_delete_marker_page_after_page(moto, inv):
    c = make_stack(inv)
    total = fill(c.s3)
    assert total > destroy.PAGE and entries(c.s3) == destroy.PAGE  # more than one page
    assert destroy.empty_bucket(c.s3, BUCKET) == total
    assert entries(c.s3) == 0
    assert destroy.empty_bucket(c.s3, BUCKET) == 0


def test_an_unversioned_bucket_is_emptied_too(moto, inv):
    c = make_stack(inv)
    for i in range(1005):
        c.s3.put_object(Bucket=BUCKET, Key=f"k{i}", Body=b"x")
    assert destroy.empty_bucket(c.s3, BUCKET) == 1005
    assert c.s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0


def test_destroy_leaves_no_object_and_no_stack(moto, inv):
    c = make_stack(inv)
    total = fill(c.s3)
    rep = Reporter(quiet=True)
    destroy.destroy(inv, rep)
    assert stack.describe(c.cloudformation, "shop-prod") is None
    said = {r.step: (r.status, r.detail) for r in rep.results}
    assert said["bucket"] == ("changed", f"{BUCKET} emptied: {total} object versions and "
                                         "delete markers deleted")
    assert said["delete stack"] == ("changed", "shop-prod deleted")
    destroy.destroy(inv, rep)  # again: nothing to do
    assert rep.results[-1].detail == "shop-prod does not exist"


def test_the_bucket_policy_goes_first_so_its_deny_cannot_stop_the_emptying(moto, inv):
    """moto applies a conditional Deny to every caller, as AWS does to one outside the VPC
    endpoint: with the policy in place nothing can be deleted; destroy removes it first."""
    c = make_stack(inv)
    fill(c.s3, keys=20)
    policy = stack.bucket_policy(BUCKET, "vpce-0123", endpoint_only=True)
    c.s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(policy))
    with pytest.raises(RailsfabError) as denied:
        destroy.empty_bucket(c.s3, BUCKET)
    assert "AccessDenied" in denied.value.message and "remain" in denied.value.state
    rep = Reporter(quiet=True)
    destroy.destroy(inv, rep)
    steps = [(r.step, r.status) for r in rep.results]
    assert steps == [("stack", "ok"), ("bucket policy", "changed"), ("bucket", "changed"),
                     ("detach", "ok"), ("delete stack", "changed")]
    assert stack.describe(c.cloudformation, "shop-prod") is None


@pytest.mark.parametrize("stage, protected, said, fix", [
    (None, False, "stack shop-prod is not stage prod's: it has no railsfab:stage tag "
     "(railsfab did not create it)",
     "check aws.stack_name of stage prod"),
    ("staging", False, "stack shop-prod is not stage prod's: its railsfab:stage tag says "
     "'staging'", "not with railsfab"),
    ("prod", True, "stack shop-prod has termination protection on",
     "aws cloudformation update-termination-protection --no-enable-termination-protection "
     "--stack-name shop-prod --region ap-northeast-1, then `fab aws.destroy` again"),
])
def test_refusals_touch_nothing(moto, inv, stage, protected, said, fix):
    c = make_stack(inv, stage=stage, protected=protected)
    total = fill(c.s3, keys=30)
    c.s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(
        stack.bucket_policy(BUCKET, None, endpoint_only=False)))
    with pytest.raises(RailsfabError) as exc:
        destroy.destroy(inv, Reporter(quiet=True))
    assert exc.value.message == said
    assert fix in exc.value.fix
    assert exc.value.state == destroy.NOTHING
    assert stack.describe(c.cloudformation, "shop-prod")["StackStatus"] == "CREATE_COMPLETE"
    assert entries(c.s3) == total
    assert c.s3.get_bucket_policy(Bucket=BUCKET)["Policy"]


@pytest.mark.parametrize("status", ["UPDATE_IN_PROGRESS", "CREATE_IN_PROGRESS",
                                    "UPDATE_ROLLBACK_IN_PROGRESS"])
def test_a_stack_in_the_middle_of_an_operation_is_refused(inv, status):
    st = {"StackName": "shop-prod", "StackStatus": status,
          "Tags": [{"Key": aws.TAG, "Value": "prod"}]}
    err = destroy.refusal(inv, st)
    assert err.message == f"stack shop-prod is {status}" and "fab aws.status" in err.fix


def test_this_stages_unprotected_stack_may_go(inv):
    st = {"StackName": "shop-prod", "StackStatus": "UPDATE_COMPLETE",
          "EnableTerminationProtection": False, "Tags": [{"Key": aws.TAG, "Value": "prod"}]}
    assert destroy.refusal(inv, st) is None


def test_a_stage_without_a_stack_name_has_nothing_to_destroy(inv):
    bare = type(inv)(inv.path, inv.stage_name, inv.stage.model_copy(update={
        "aws": inv.stage.aws.model_copy(update={"stack_name": None})}))
    with pytest.raises(ConfigError, match="has no aws.stack_name"):
        destroy.destroy(bare, Reporter(quiet=True))


def test_the_app_group_and_profile_come_off_the_instances_first(moto, inv):
    """AWS refuses to delete a security group an instance has (moto deletes it anyway, and
    leaves the instance naming a group that is gone)."""
    c = aws.clients(inv)
    ec2, iam = c.ec2, c.client("iam")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    app = ec2.create_security_group(GroupName="app", Description="app", VpcId=vpc)["GroupId"]
    ops = ec2.create_security_group(GroupName="ops", Description="ops", VpcId=vpc)["GroupId"]
    iam.create_role(RoleName="app", AssumeRolePolicyDocument="{}")
    profile = iam.create_instance_profile(InstanceProfileName="app")["InstanceProfile"]["Arn"]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    one, two = (i["InstanceId"] for i in ec2.run_instances(
        ImageId=image, MinCount=2, MaxCount=2, SubnetId=subnet)["Instances"])
    ec2.modify_instance_attribute(InstanceId=one, Groups=[ops, app])
    ec2.modify_instance_attribute(InstanceId=two, Groups=[app])
    for i in (one, two):
        ec2.associate_iam_instance_profile(InstanceId=i, IamInstanceProfile={"Arn": profile})
    rep = Reporter(quiet=True)
    destroy._detach(ec2, {"AppSecurityGroupId": app, "InstanceProfileArn": profile}, rep)

    def groups(i):
        return [g["GroupName"] for g in ec2.describe_instances(InstanceIds=[i])[
            "Reservations"][0]["Instances"][0]["SecurityGroups"]]

    assert (groups(one), groups(two)) == (["ops"], ["default"])
    assert ec2.describe_iam_instance_profile_associations(Filters=[
        {"Name": "state", "Values": ["associated"]}])["IamInstanceProfileAssociations"] == []
    assert rep.results[-1].status == "changed" and f"{app} from {one}" in rep.results[-1].detail
    destroy._detach(ec2, {"AppSecurityGroupId": app, "InstanceProfileArn": profile}, rep)
    assert rep.results[-1].status == "ok"
