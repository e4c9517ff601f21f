"""A host's instance id comes with its facts (cloud-init's record; a sandbox host's written
likewise), so rolling through the target group needs no metadata request and no EC2 lookup;
anything that is not an instance id is ignored (and the lookups decide, as before)."""

from __future__ import annotations

import pytest

from railsfab.facts import Facts
from railsfab.instances import Instances
from railsfab.inventory import Host
from railsfab.rolling import TargetGroup
from railsfab.sandbox.machine import Machine


@pytest.mark.parametrize("raw, found", [
    ("i-0123456789abcdef0", "i-0123456789abcdef0"),
    ("i-12345678", "i-12345678"),
    ("iid-datasource-none", None),  # cloud-init without a data source
    ("i-0123; rm -rf /", None),
    (None, None),
    (42, None),
])
def test_only_an_instance_id_is_taken_from_the_facts(raw, found):
    assert Facts({"instance_id": raw}).instance_id == found


class FakeInventory:
    class stage:  # noqa: N801
        class aws:  # noqa: N801
            target_type = "instance"
        sandbox = True


def bare_target_group() -> TargetGroup:
    tg = TargetGroup.__new__(TargetGroup)
    tg.inv = FakeInventory
    tg.instances = Instances(FakeInventory, None)  # no EC2: the ids given must decide
    return tg


def test_hosts_yaml_first_then_the_hosts_own_id():
    tg = bare_target_group()
    web1 = Host(name="web1", address="10.0.1.11", roles=["web"])
    assert tg.target(web1, None, "i-0aaaaaaaaaaaaaaa1") == {"Id": "i-0aaaaaaaaaaaaaaa1",
                                                             "Port": 80}
    pinned = Host(name="web1", address="10.0.1.11", roles=["web"],
                  instance_id="i-0bbbbbbbbbbbbbbb2")
    assert tg.target(pinned, None, "i-0aaaaaaaaaaaaaaa1")["Id"] == "i-0bbbbbbbbbbbbbbb2"


def test_the_sandbox_records_the_id_where_cloud_init_does(tmp_path):
    m = Machine(name="web1", address="10.0.1.11", root=tmp_path, netns="ns", veth="v",
                pidfile=None, log=tmp_path / "log")
    assert m.record_instance_id("i-0aaaaaaaaaaaaaaa1") is True
    assert (tmp_path / "var/lib/cloud/data/instance-id").read_text() == "i-0aaaaaaaaaaaaaaa1\n"
    assert m.record_instance_id("i-0aaaaaaaaaaaaaaa1") is False
    assert m.record_instance_id(None) is True
    assert not (tmp_path / "var/lib/cloud/data/instance-id").exists()
