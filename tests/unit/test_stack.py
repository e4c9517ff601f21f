"""The CloudFormation template as rendered for a stage: listeners, redirect, security group
and health check, with and without HTTPS at the ALB."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from railsfab import inventory, stack

ROOT = Path(__file__).resolve().parents[2]


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !GetAtt, !Sub) kept as {tag: value}."""


def _tagged(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node)
    else:
        value = loader.construct_mapping(node)
    return {f"!{suffix}": value}


CfnLoader.add_multi_constructor("!", _tagged)


def rendered(tmp_path, **aws) -> dict:
    doc = {"default_stage": "prod", "stages": {"prod": {
        "hosts": [{"name": "web1", "address": "198.51.100.7"}],
        "app": {"name": "shop", "source": str(ROOT / "examples/sample_app"),
                "deploy_to": "/srv/shop", "health_path": "/healthz"},
        "aws": {"region": "ap-northeast-1", "stack_name": "shop", "bucket": "shop-up",
                "admin_cidr": "203.0.113.0/24", **aws}}}}
    (tmp_path / "hosts.yaml").write_text(yaml.safe_dump(doc))
    return yaml.load(stack.template(inventory.load(tmp_path / "hosts.yaml")), CfnLoader)


def ingress_ports(t: dict) -> list[int]:
    return [r["FromPort"] for r in t["Resources"]["AlbSecurityGroup"]["Properties"][
        "SecurityGroupIngress"]]


def test_without_a_certificate_port_80_forwards_and_443_stays_closed(tmp_path):
    t = rendered(tmp_path)
    http = t["Resources"]["Listener"]["Properties"]
    assert http["Port"] == 80 and http["DefaultActions"][0]["Type"] == "forward"
    assert "HttpsListener" not in t["Resources"] and "CertificateArn" not in t["Parameters"]
    assert ingress_ports(t) == [80]


@pytest.mark.parametrize("cert", [
    {"certificate_arn": "arn:aws:acm:ap-northeast-1:123456789012:certificate/abc"},
    {"certificate_domain": "shop.example.com"},
])
def test_a_certificate_adds_https_443_and_port_80_redirects_to_it(tmp_path, cert):
    t = rendered(tmp_path, **cert)
    https = t["Resources"]["HttpsListener"]["Properties"]
    assert (https["Port"], https["Protocol"]) == (443, "HTTPS")
    assert https["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert https["Certificates"] == [{"CertificateArn": {"!Ref": "CertificateArn"}}]
    assert https["DefaultActions"][0]["Type"] == "forward"
    redirect = t["Resources"]["Listener"]["Properties"]["DefaultActions"][0]
    assert redirect == {"Type": "redirect", "RedirectConfig": {
        "Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"}}
    assert ingress_ports(t) == [80, 443]
    assert t["Parameters"]["CertificateArn"] == {"Type": "String"}


@pytest.mark.parametrize("cert, warned", [
    ({}, True),
    ({"certificate_arn": "arn:aws:acm:ap-northeast-1:123456789012:certificate/abc"}, False),
    ({"certificate_domain": "shop.example.com"}, False),
])
def test_provision_warns_of_an_http_only_alb_on_a_real_stage(tmp_path, cert, warned):
    rendered(tmp_path, **cert)
    said = stack.http_only(inventory.load(tmp_path / "hosts.yaml"))
    assert bool(said) == warned
    assert not said or "aws.certificate_arn" in said


def test_the_target_groups_health_check_asks_the_apps_health_path(tmp_path):
    tg = rendered(tmp_path)["Resources"]["TargetGroup"]["Properties"]
    assert tg["HealthCheckPath"] == "/healthz" and tg["Matcher"] == {"HttpCode": "200"}


def test_the_app_servers_still_take_only_http_from_the_alb(tmp_path):
    app_sg = rendered(tmp_path, certificate_arn="arn:aws:acm:ap-northeast-1:1:certificate/x")[
        "Resources"]["AppSecurityGroup"]
    ports = [r["FromPort"] for r in app_sg["Properties"]["SecurityGroupIngress"]]
    assert ports == [80, 22]


def endpoint_statements(t: dict) -> dict[str, dict]:
    policy = t["Resources"]["S3Endpoint"]["Properties"]["PolicyDocument"]
    assert policy["Version"] == "2012-10-17"
    return {s["Sid"]: s for s in policy["Statement"]}


def test_the_s3_endpoint_reaches_only_the_stages_bucket(tmp_path):
    st = endpoint_statements(rendered(tmp_path))
    objects, listing = st["StageBucketsObjects"], st["StageBucketsList"]
    assert objects["Effect"] == listing["Effect"] == "Allow"
    assert objects["Action"] == ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    assert objects["Resource"] == ["arn:aws:s3:::shop-up/*"]
    assert (listing["Action"], listing["Resource"]) == (["s3:ListBucket"],
                                                        ["arn:aws:s3:::shop-up"])
    assert set(st) == {"StageBucketsObjects", "StageBucketsList"}  # nothing else: no "*"


def test_endpoint_buckets_extend_the_endpoint_policy(tmp_path):
    st = endpoint_statements(rendered(tmp_path, endpoint_buckets=[
        "al2023-repos-ap-northeast-1-de612dc2", "shop.logs"]))
    assert st["StageBucketsObjects"]["Resource"] == [
        "arn:aws:s3:::shop-up/*", "arn:aws:s3:::al2023-repos-ap-northeast-1-de612dc2/*",
        "arn:aws:s3:::shop.logs/*"]
    assert st["StageBucketsList"]["Resource"] == [
        "arn:aws:s3:::shop-up", "arn:aws:s3:::al2023-repos-ap-northeast-1-de612dc2",
        "arn:aws:s3:::shop.logs"]


def test_the_rendered_endpoint_policy_is_the_one_provision_checks(tmp_path):
    """The template and the step after the stack (the sandbox's engine loses the endpoint's
    policy on an update) use one document."""
    rendered(tmp_path, endpoint_buckets=["extra-bucket"])
    inv = inventory.load(tmp_path / "hosts.yaml")
    t = yaml.load(stack.template(inv), CfnLoader)
    assert t["Resources"]["S3Endpoint"]["Properties"]["PolicyDocument"] == \
        stack.endpoint_policy(inv)


def test_a_policy_read_back_compares_equal_whatever_the_list_shape():
    doc = {"Statement": [{"Action": ["s3:GetObject"], "Resource": ["a", "b"]}]}
    same = {"Statement": [{"Action": "s3:GetObject", "Resource": ["a", "b"]}]}
    assert stack._canon(doc) == stack._canon(same)
    assert stack._canon(doc) != stack._canon({"Statement": [{"Action": "s3:GetObject",
                                                             "Resource": ["a"]}]})


def test_the_endpoint_policy_is_put_back_once_and_then_left_alone(tmp_path, monkeypatch):
    """What provision does after the stack: the sandbox's engine keeps the endpoint's policy
    unparsed, or the endpoint's default (everything) after losing it on an update."""
    from moto import mock_aws

    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(k, "testing")
    rendered(tmp_path)
    inv = inventory.load(tmp_path / "hosts.yaml")
    with mock_aws():
        import boto3

        ec2 = boto3.client("ec2", region_name="ap-northeast-1")
        vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
        rt = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
        vpce = ec2.create_vpc_endpoint(VpcId=vpc, ServiceName="com.amazonaws.ap-northeast-1.s3",
                                       RouteTableIds=[rt])["VpcEndpoint"]["VpcEndpointId"]
        policy = stack.endpoint_policy(inv)
        assert stack._ensure_endpoint_policy(ec2, vpce, policy) is True
        assert stack._ensure_endpoint_policy(ec2, vpce, policy) is False
        stored = ec2.describe_vpc_endpoints(VpcEndpointIds=[vpce])["VpcEndpoints"][0]
        assert json.loads(stored["PolicyDocument"]) == policy
