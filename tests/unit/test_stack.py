"""The CloudFormation template as rendered for a stage: listeners, redirect, security group
and health check, with and without HTTPS at the ALB."""

from __future__ import annotations

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


def test_the_target_groups_health_check_asks_the_apps_health_path(tmp_path):
    tg = rendered(tmp_path)["Resources"]["TargetGroup"]["Properties"]
    assert tg["HealthCheckPath"] == "/healthz" and tg["Matcher"] == {"HttpCode": "200"}


def test_the_app_servers_still_take_only_http_from_the_alb(tmp_path):
    app_sg = rendered(tmp_path, certificate_arn="arn:aws:acm:ap-northeast-1:1:certificate/x")[
        "Resources"]["AppSecurityGroup"]
    ports = [r["FromPort"] for r in app_sg["Properties"]["SecurityGroupIngress"]]
    assert ports == [80, 22]
