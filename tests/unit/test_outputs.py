"""The stack outputs commands need: which, the one line that names what a stack lacks, and
what a rendered template declares (what provision checks it got back)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from railsfab import inventory, outputs, stack

ROOT = Path(__file__).resolve().parents[2]


def stage(tmp_path, sandbox: bool = False, **aws) -> inventory.Inventory:
    st = {"hosts": [{"name": "web1", "address": "10.240.1.11"}],
          "app": {"name": "shop", "source": str(ROOT / "examples/sample_app"),
                  "deploy_to": "/srv/shop", "health_path": "/healthz"},
          "aws": {"region": "ap-northeast-1", "stack_name": "shop-prod", "bucket": "shop-up",
                  "admin_cidr": "203.0.113.0/24", "vpc_id": "vpc-1", "subnet_ids": ["s-1"],
                  "route_table_ids": ["rtb-1"], **aws}}
    if sandbox:
        st["sandbox"] = {"bridge": "rftest0", "subnet": "10.240.0.0/16",
                         "gateway": "10.240.0.1"}
    (tmp_path / "hosts.yaml").write_text(yaml.safe_dump(
        {"default_stage": "prod", "stages": {"prod": st}}))
    return inventory.load(tmp_path / "hosts.yaml")


def test_commands_need_the_target_group_unless_hosts_yaml_names_one(tmp_path):
    assert outputs.needed(stage(tmp_path)) == (
        "TargetGroupArn", "AppSecurityGroupId", "AlbSecurityGroupId", "InstanceProfileArn")
    arn = "arn:aws:elasticloadbalancing:ap-northeast-1:123456789012:targetgroup/x/0123"
    assert "TargetGroupArn" not in outputs.needed(stage(tmp_path, target_group_arn=arn))


@pytest.mark.parametrize("out, absent, status, said", [
    ({}, [], None, "stack shop-prod (aws.stack_name of stage prod) does not exist in "
                   "ap-northeast-1: run `fab aws.provision --stage prod`"),
    ({"AlbDnsName": "x", "AppSecurityGroupId": "sg-1", "AlbSecurityGroupId": "sg-2",
      "InstanceProfileArn": "arn:p"}, ["TargetGroupArn"], "UPDATE_COMPLETE",
     "stack shop-prod (UPDATE_COMPLETE) lacks output TargetGroupArn (the ALB's target "
     "group): run `fab aws.provision --stage prod`"),
    ({"AlbDnsName": "x"}, ["TargetGroupArn", "AppSecurityGroupId", "AlbSecurityGroupId",
                           "InstanceProfileArn"], "ROLLBACK_COMPLETE",
     "stack shop-prod (ROLLBACK_COMPLETE) lacks outputs TargetGroupArn (the ALB's target "
     "group), AppSecurityGroupId (the app hosts' security group), AlbSecurityGroupId (the "
     "ALB's security group), InstanceProfileArn (the hosts' instance profile): run "
     "`fab aws.provision --stage prod`"),
])
def test_a_stack_that_lacks_what_commands_read_is_one_line_with_the_fix(
        tmp_path, out, absent, status, said):
    inv = stage(tmp_path)
    assert outputs.missing(out, outputs.needed(inv)) == (absent or list(outputs.needed(inv)))
    err = outputs.lacking(inv, absent, status)
    assert err.message == said and "\n" not in err.message
    assert (err.step, err.fix) == ("stack", "fab aws.provision --stage prod")


def test_provision_knows_every_output_and_resource_the_template_declares(tmp_path):
    body = stack.template(stage(tmp_path))
    assert outputs.declared_outputs(body) == [
        "AlbDnsName", "TargetGroupArn", "BucketName", "AppSecurityGroupId",
        "AlbSecurityGroupId", "VpcEndpointId", "InstanceProfileArn"]
    assert set(outputs.NEEDED) <= set(outputs.declared_outputs(body))
    assert outputs.declared_resources(body) == [
        "AlbSecurityGroup", "AppSecurityGroup", "LoadBalancer", "TargetGroup", "Listener",
        "Bucket", "S3Endpoint", "AppRole", "AppInstanceProfile"]


def test_in_the_sandbox_health_path_and_endpoint_policy_are_no_properties_of_the_stack(
        tmp_path):
    """moto's engine drops a target group or endpoint whose properties change from the stack
    (and its output): there, railsfab sets both after the stack; on AWS the template holds
    them."""
    on_aws = stack.template(stage(tmp_path))
    sandbox = stack.template(stage(tmp_path, sandbox=True))
    assert "HealthCheckPath: /healthz" in on_aws and "PolicyDocument: {" in on_aws
    assert "HealthCheckPath" not in sandbox and "PolicyDocument: {" not in sandbox
    policy = next(ln for ln in on_aws.splitlines(keepends=True) if "PolicyDocument: {" in ln)
    assert on_aws.replace("      HealthCheckPath: /healthz\n", "").replace(policy, "") == sandbox
