"""hosts.yaml's aws block: admin_cidr is a CIDR, SSH from anywhere only when the stage says
so, endpoint_buckets are bucket names; each mistake is one line and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from railsfab import inventory
from railsfab.errors import ConfigError
from tests.conftest import run_fab

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, **aws) -> Path:
    doc = {"default_stage": "prod", "stages": {"prod": {
        "hosts": [{"name": "web1", "address": "198.51.100.7"}],
        "app": {"name": "shop", "source": "../shop", "deploy_to": "/srv/shop"},
        "aws": {"region": "ap-northeast-1", **aws}}}}
    p = tmp_path / "hosts.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def load(tmp_path: Path, **aws) -> inventory.AWS:
    return inventory.load(write(tmp_path, **aws)).stage.aws


def refused(tmp_path: Path, **aws) -> str:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, **aws)
    assert exc.value.exit_code == 2
    msg = exc.value.message
    assert "\n" not in msg
    return msg.split("hosts.yaml: ", 1)[1]


@pytest.mark.parametrize("given, kept", [
    ("203.0.113.0/24", "203.0.113.0/24"),
    ("203.0.113.7/32", "203.0.113.7/32"),
    ("203.0.113.7", "203.0.113.7/32"),  # one address: CloudFormation needs the /32
    (" 10.0.0.0/8 ", "10.0.0.0/8"),
])
def test_admin_cidr_is_kept_as_a_cidr(tmp_path, given, kept):
    assert load(tmp_path, admin_cidr=given).admin_cidr == kept


@pytest.mark.parametrize("given, said", [
    ("not-a-cidr", "'not-a-cidr' is not an IPv4 CIDR like 203.0.113.0/24"),
    ("10.0.0.5/24", "10.0.0.5/24 has host bits set"),
    ("10.0.0.0/33", "'10.0.0.0/33' is not an IPv4 CIDR"),
    ("2001:db8::/32", "'2001:db8::/32' is not an IPv4 CIDR"),
    ("10.0.0.0/8; curl x|sh", "is not an IPv4 CIDR"),
    ("", "'' is not an IPv4 CIDR"),
])
def test_admin_cidr_that_is_not_a_cidr_is_one_line(tmp_path, given, said):
    msg = refused(tmp_path, admin_cidr=given)
    assert msg.startswith("stages.prod.aws.admin_cidr: ") and said in msg


def test_ssh_from_anywhere_needs_the_stage_to_say_so(tmp_path):
    msg = refused(tmp_path, admin_cidr="0.0.0.0/0")
    assert msg.startswith("stages.prod.aws: admin_cidr 0.0.0.0/0 opens SSH (port 22) to the "
                          "whole internet")
    assert "allow_ssh_from_anywhere: true" in msg
    a = load(tmp_path, admin_cidr="0.0.0.0/0", allow_ssh_from_anywhere=True)
    assert (a.admin_cidr, a.allow_ssh_from_anywhere) == ("0.0.0.0/0", True)
    for broad in ("0.0.0.0/1", "128.0.0.0/1", "10.0.0.0/7"):
        msg = refused(tmp_path, admin_cidr=broad)
        assert f"admin_cidr {broad} opens SSH (port 22) to a large part of the internet" in msg
    assert load(tmp_path, admin_cidr="10.0.0.0/8").admin_cidr == "10.0.0.0/8"


def test_endpoint_buckets_are_bucket_names(tmp_path):
    ok = load(tmp_path, endpoint_buckets=["al2023-repos-ap-northeast-1-de612dc2", "my.logs"])
    assert ok.endpoint_buckets == ["al2023-repos-ap-northeast-1-de612dc2", "my.logs"]
    assert load(tmp_path).endpoint_buckets == []
    for bad in ("Upper", "a", "x/*", 'b"]}', "-lead", "with space"):
        msg = refused(tmp_path, endpoint_buckets=["fine-bucket", bad])
        assert msg.startswith("stages.prod.aws.endpoint_buckets: ") and "bucket name" in msg


def test_fab_says_it_in_one_line_with_exit_2(tmp_path):
    bad = write(tmp_path, admin_cidr="not-a-cidr")
    proc = run_fab(bad, "aws.status", cwd=tmp_path, bare=True)
    assert proc.returncode == 2
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out
    assert "stages.prod.aws.admin_cidr: 'not-a-cidr' is not an IPv4 CIDR" in out
