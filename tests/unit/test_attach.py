"""The deploy's "sg + profile" step, decided from what EC2 says of one instance: the stack's
app group added to the instance's own, its instance profile associated or replaced, and
nothing asked of EC2 when both are in place."""

from __future__ import annotations

import pytest

from railsfab import attach
from railsfab.errors import RailsfabError

PROFILE = "arn:aws:iam::123456789012:instance-profile/shop-AppInstanceProfile-X1"
OTHER = "arn:aws:iam::123456789012:instance-profile/ssm-only"


def ec2(*groups: str, vpc: str = "vpc-1") -> dict:
    return {"InstanceId": "i-0abc", "VpcId": vpc,
            "SecurityGroups": [{"GroupId": g, "GroupName": g} for g in groups]}


def assoc(arn: str) -> dict:
    return {"AssociationId": "iip-assoc-1", "InstanceId": "i-0abc",
            "IamInstanceProfile": {"Arn": arn}, "State": "associated"}


CASES = {
    # name: (instance, association, groups to set, replace, associate, said)
    "fresh instance": (ec2("sg-default"), None, ("sg-default", "sg-app"), None, True,
                       ("app group sg-app attached (kept sg-default)",
                        "profile shop-AppInstanceProfile-X1 associated")),
    "no group at all": (ec2(), None, ("sg-app",), None, True,
                        ("app group sg-app attached",
                         "profile shop-AppInstanceProfile-X1 associated")),
    "group there, no profile": (ec2("sg-a", "sg-app"), None, None, None, True,
                                ("app group sg-app",
                                 "profile shop-AppInstanceProfile-X1 associated")),
    "another profile": (ec2("sg-app"), assoc(OTHER), None, "iip-assoc-1", False,
                        ("app group sg-app",
                         "profile shop-AppInstanceProfile-X1 replaced ssm-only")),
    "both in place": (ec2("sg-a", "sg-app", "sg-b"), assoc(PROFILE), None, None, False,
                      ("app group sg-app",
                       "profile shop-AppInstanceProfile-X1")),
    "others kept, in order": (ec2("sg-b", "sg-a"), assoc(PROFILE), ("sg-b", "sg-a", "sg-app"),
                              None, False,
                              ("app group sg-app attached (kept sg-b, sg-a)",
                               "profile shop-AppInstanceProfile-X1")),
}


@pytest.mark.parametrize("case", CASES)
def test_what_an_instance_lacks(case):
    inst, association, groups, replace, associate, said = CASES[case]
    a = attach.plan(inst, association, sg="sg-app", sg_vpc="vpc-1", profile=PROFILE)
    assert (a.instance, a.groups, a.replace, a.associate, a.said) == \
        ("i-0abc", groups, replace, associate, said)
    assert a.changes == (groups is not None or replace is not None or associate)


class Recorder:
    """An EC2 client that only notes which calls were made."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name):
        return lambda **kw: self.calls.append(name)


@pytest.mark.parametrize("inst, association, calls", [
    (ec2("sg-app"), assoc(PROFILE), []),
    (ec2("sg-x"), None, ["modify_instance_attribute", "associate_iam_instance_profile"]),
    (ec2("sg-app"), assoc(OTHER), ["replace_iam_instance_profile_association"]),
    (ec2("sg-x"), assoc(PROFILE), ["modify_instance_attribute"]),
])
def test_ec2_is_asked_only_for_what_is_missing(inst, association, calls):
    ec2_client = Recorder()
    attach._apply(ec2_client, attach.plan(inst, association, sg="sg-app", sg_vpc="vpc-1",
                                          profile=PROFILE))
    assert ec2_client.calls == calls


def test_an_instance_in_another_vpc_is_refused_with_the_fix():
    with pytest.raises(RailsfabError) as exc:
        attach.plan(ec2("sg-a", vpc="vpc-2"), None, sg="sg-app", sg_vpc="vpc-1",
                    profile=PROFILE)
    assert "i-0abc is in vpc-2, the stack's app security group sg-app in vpc-1" in \
        exc.value.message
    assert "aws.vpc_id" in exc.value.fix
