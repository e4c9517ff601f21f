"""`fab check`'s security-groups layer: what EC2 says of a host's instance in, one verdict out.

A host is healthy when only the ALB's group reaches :80, nobody in the world reaches :22
(unless the stage allows it) and the stack's app group is attached."""

from __future__ import annotations

import copy

import pytest

from railsfab.diagnose import evaluate, first_broken
from railsfab.paths import Paths
from tests.unit.test_diagnose import HEALTHY

PATHS = Paths("sample", "/srv/sample", "unicorn")
ALB_ONLY = {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
            "UserIdGroupPairs": [{"GroupId": "sg-alb", "UserId": "123456789012"}]}
ADMIN_SSH = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
             "IpRanges": [{"CidrIp": "203.0.113.0/24"}]}


def instance(*extra_groups: dict, app_rules=(ALB_ONLY, ADMIN_SSH), **settings) -> dict:
    app = {"GroupId": "sg-app", "GroupName": "shop-app", "IpPermissions": list(app_rules)}
    return {"instance": "i-0abc", "alb_sg": "sg-alb", "app_sg": "sg-app",
            "admin_cidr": "203.0.113.0/24", "ssh_anywhere_allowed": False,
            "groups": [app, *extra_groups], **settings}


def group(gid: str, *rules: dict, name: str = "extra") -> dict:
    return {"GroupId": gid, "GroupName": name, "IpPermissions": list(rules)}


def cidr(port: int, source: str, to: int | None = None, proto: str = "tcp") -> dict:
    rule = {"IpProtocol": proto, "IpRanges": [{"CidrIp": source}]}
    if proto != "-1":
        rule.update(FromPort=port, ToPort=to or port)
    return rule


def judge(sg: dict | None):
    verdicts = evaluate(copy.deepcopy(HEALTHY), workers=2, app_user="deploy", paths=PATHS,
                        sg=sg)
    return next(v for v in verdicts if v.layer == "security groups")


OPEN_80 = "not only to the ALB's group sg-alb"
OPEN_22 = ":22 (SSH) of i-0abc is open to"
CASES = {
    # name: (the instance's groups, status, in the detail, in the fix)
    "only the ALB on 80, admins on 22": (instance(), "ok", ":80 only from the ALB's group",
                                         ""),
    "80 from the world": (instance(group("sg-web", cidr(80, "0.0.0.0/0"))), "FAIL",
                          "open to 0.0.0.0/0 through sg-web (extra)",
                          "aws ec2 revoke-security-group-ingress --group-id sg-web "
                          "--protocol tcp --port 80 --cidr 0.0.0.0/0"),
    "80 from a private range": (instance(group("sg-web", cidr(80, "10.0.0.0/8"))), "FAIL",
                                OPEN_80, "--cidr 10.0.0.0/8"),
    "80 inside a port range": (instance(group("sg-web", cidr(1, "10.1.0.0/16", to=1024))),
                               "FAIL", OPEN_80, "--port 1-1024 --cidr 10.1.0.0/16"),
    "all traffic from a CIDR": (instance(group("sg-all", cidr(0, "192.0.2.0/24", proto="-1"))),
                                "FAIL", OPEN_80, "--protocol all --cidr 192.0.2.0/24"),
    "80 from another group (default's self rule)": (
        instance(group("sg-def", {"IpProtocol": "-1", "UserIdGroupPairs": [
            {"GroupId": "sg-def"}]}, name="default")), "FAIL",
        "open to sg-def through sg-def (default)", "--source-group sg-def"),
    "80 from ::/0": (instance(group("sg-v6", {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
                                               "Ipv6Ranges": [{"CidrIpv6": "::/0"}]})),
                     "FAIL", "open to ::/0", "remove the rule that lets ::/0 in"),
    "80 from a prefix list": (instance(group("sg-pl", {
        "IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
        "PrefixListIds": [{"PrefixListId": "pl-123"}]})), "FAIL", "open to pl-123", "pl-123"),
    "443 from the world is not :80": (instance(group("sg-tls", cidr(443, "0.0.0.0/0"))), "ok",
                                      ":80 only from the ALB's group", ""),
    "udp 80 is not HTTP": (instance(group("sg-u", cidr(80, "0.0.0.0/0", proto="udp"))), "ok",
                           ":80 only", ""),
    "22 from the world": (instance(group("sg-ssh", cidr(22, "0.0.0.0/0"))), "FAIL",
                          f"{OPEN_22} 0.0.0.0/0 through sg-ssh (extra)",
                          "--protocol tcp --port 22 --cidr 0.0.0.0/0; SSH should come from "
                          "aws.admin_cidr (203.0.113.0/24) only"),
    "22 from ::/0": (instance(group("sg-ssh6", {"IpProtocol": "tcp", "FromPort": 22,
                                                "ToPort": 22,
                                                "Ipv6Ranges": [{"CidrIpv6": "::/0"}]})),
                     "FAIL", f"{OPEN_22} ::/0", "::/0"),
    "22 from the world in the app group itself": (
        instance(app_rules=(ALB_ONLY, cidr(22, "0.0.0.0/0"))), "FAIL",
        f"{OPEN_22} 0.0.0.0/0 through sg-app (shop-app)", "--group-id sg-app"),
    "22 from the world when the stage allows it": (
        instance(group("sg-ssh", cidr(22, "0.0.0.0/0")), ssh_anywhere_allowed=True), "ok",
        ":22 from 203.0.113.0/24, 0.0.0.0/0", ""),
    "22 from a wide but not world range": (instance(group("sg-ssh", cidr(22, "10.0.0.0/8"))),
                                           "ok", ":22 from 203.0.113.0/24, 10.0.0.0/8", ""),
    "the app group is not attached": (
        {**instance(), "groups": [group("sg-other", cidr(22, "203.0.113.0/24"))]}, "FAIL",
        "the stack's app security group sg-app is not attached to i-0abc (it has sg-other)",
        "fab deploy attaches it"),
    "no groups at all": ({**instance(), "groups": []}, "FAIL", "(it has none)", "fab deploy"),
    "EC2 refused to say": ({**instance(), "error": "UnauthorizedOperation"}, "FAIL",
                           "could not read the instance's security groups: Unauthorized",
                           "ec2:DescribeSecurityGroups"),
    "no instance for the host": ({"skip": "no EC2 instance found for 10.0.0.5"}, "skip",
                                 "no EC2 instance found for 10.0.0.5", ""),
    "no stack": (None, "skip", "no stack in this stage", ""),
}


@pytest.mark.parametrize("case", CASES)
def test_security_group_verdicts(case):
    sg, status, detail, fix = CASES[case]
    v = judge(sg)
    assert (v.status, detail in v.detail, fix in v.fix) == (status, True, True), v


def test_exposure_is_reported_before_a_missing_app_group():
    """A host open to the world is the worse news: it is named first."""
    sg = {**instance(), "groups": [group("sg-web", cidr(80, "0.0.0.0/0"))]}
    assert OPEN_80 in judge(sg).detail


def test_every_offending_source_is_named_once():
    sg = instance(group("sg-a", cidr(80, "0.0.0.0/0"), cidr(0, "0.0.0.0/0", proto="-1")),
                  group("sg-b", cidr(80, "10.0.0.0/8")))
    v = judge(sg)
    assert v.detail.count("0.0.0.0/0 through sg-a") == 1 and "10.0.0.0/8 through sg-b" in \
        v.detail


def test_a_healthy_host_is_not_broken_by_this_layer():
    verdicts = evaluate(copy.deepcopy(HEALTHY), workers=2, app_user="deploy", paths=PATHS,
                        sg=instance())
    assert first_broken(verdicts) is None
