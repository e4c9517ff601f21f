"""A fleet from AWS on real sandbox hosts: `hosts_from: {tag: {Role: web}}` and
`app.artifact: s3`, with the sandbox's AWS endpoint (moto) as EC2, Auto Scaling and S3.

The sandbox boots web1, web2 and web3 as unlisted instances (web1 and web2 tagged Role=web
and in the group fleet-web, web1 also railsfab:migrate=true, web3 untagged) and db as a
listed host. The tests build on each
other in order: the tagged hosts deploy, the archive is in the bucket once; a tampered
archive is refused on the host that fetches it; web3, once tagged, comes up to the fleet's
release alone. The sandbox is its own (10.<net>.64.0/18, inside the session sandbox's
10.<net>.0.0/16 and routed apart), so it can run beside the session's.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import boto3
import pytest
import yaml

from tests.conftest import booted, run_fab, shipped_app_settings
from tests.integration.conftest import copy_app

NET = int(os.environ.get("RAILSFAB_TEST_NET", "232"))
GW = f"10.{NET}.64.1"
BUCKET = f"fleet-artifacts-{NET}"
APP_MARKER = "railsfab sample app"
ADDR = {"web1": f"10.{NET}.65.11", "web2": f"10.{NET}.66.12", "web3": f"10.{NET}.65.13",
        "db": f"10.{NET}.65.20"}


def fleet_stage(folder: Path, hosts_from: dict) -> dict:
    app = {**shipped_app_settings(), "source": str(folder / "app"), "artifact": "s3",
           "secrets_file": ".railsfab/sandbox/fleet/secrets.env",
           "database": {"host": ADDR["db"], "name": "fleet_production", "user": "fleet"}}
    return {
        "sandbox": {"bridge": f"rff{NET}", "subnet": f"10.{NET}.64.0/18", "gateway": GW,
                    "instances": [
                        # web1 may run the migrations (hosts_from.migrate_tag's default)
                        {"name": "web1", "address": ADDR["web1"],
                         "tags": {"Role": "web", "railsfab:migrate": "true"},
                         "auto_scaling_group": "fleet-web"},
                        {"name": "web2", "address": ADDR["web2"], "tags": {"Role": "web"},
                         "auto_scaling_group": "fleet-web"},
                        {"name": "web3", "address": ADDR["web3"]},
                    ]},
        "ssh": {"user": "admin", "key": ".railsfab/sandbox/fleet/id_ed25519"},
        "hosts_from": hosts_from,
        "hosts": [{"name": "db", "address": ADDR["db"], "roles": ["db"]}],
        "app": app,
        "aws": {"region": "ap-northeast-1", "endpoint_url": f"http://{GW}:5055",
                "bucket": BUCKET, "apply_bucket_policy": False},
        "apt_proxy": f"http://{GW}:8888",
    }


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("integration tests need root: they boot systemd-nspawn hosts")
    folder = tmp_path_factory.mktemp("fleet")
    copy_app(folder / "app")
    doc = {"default_stage": "fleet", "stages": {
        "fleet": fleet_stage(folder, {"tag": {"Role": "web"}}),
        # the same sandbox's hosts, read from the Auto Scaling group it recorded
        "fleet-asg": fleet_stage(folder, {"auto_scaling_group": "fleet-web"})}}
    (folder / "hosts.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder


@pytest.fixture(scope="module")
def sandbox(folder):
    with booted(folder / "hosts.yaml") as sbx:
        yield sbx


@pytest.fixture(scope="module")
def aws(sandbox):
    def client(name):
        return boto3.client(name, region_name="ap-northeast-1", endpoint_url=f"http://{GW}:5055",
                            aws_access_key_id="testing", aws_secret_access_key="testing")
    s3 = client("s3")
    s3.create_bucket(Bucket=BUCKET,  # what the stack's bucket is on AWS
                     CreateBucketConfiguration={"LocationConstraint": "ap-northeast-1"})
    return {"s3": s3, "ec2": client("ec2")}


@pytest.fixture(scope="module")
def first(folder, aws):
    r = run_fab(folder / "hosts.yaml", "deploy")
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def ssh(sandbox, host: str, cmd: str, check: bool = True) -> str:
    r = subprocess.run(["ssh", "-F", str(sandbox.ssh_config), "-o", "BatchMode=yes", host, cmd],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 or not check, r.stderr
    return r.stdout.strip()


def served(address: str) -> str:
    r = subprocess.run(["curl", "-s", "-m", "10", f"http://{address}/"], capture_output=True,
                       text=True)
    return r.stdout


def artifacts(aws) -> dict[str, bytes]:
    objs = aws["s3"].list_objects_v2(Bucket=BUCKET, Prefix="releases/").get("Contents", [])
    return {o["Key"]: aws["s3"].get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
            for o in objs}


def current(sandbox, host: str) -> str:
    return ssh(sandbox, host, "readlink /srv/sample/current").rsplit("/", 1)[-1]


def recap(out: str, host: str) -> str:
    tail = out.split(" recap (", 1)[1]
    return next(ln for ln in tail.splitlines() if ln.split()[:1] == [host])


def instance_id(aws, name: str) -> str:
    res = aws["ec2"].describe_instances(Filters=[{"Name": "tag:Name", "Values": [name]},
                                                 {"Name": "instance-state-name",
                                                  "Values": ["running"]}])
    return res["Reservations"][0]["Instances"][0]["InstanceId"]


def test_the_tagged_instances_are_deployed_and_the_untagged_one_is_left_alone(first, sandbox):
    said = next(ln for ln in first.stdout.splitlines() if ln.strip().startswith("hosts "))
    assert f"tag Role=web in http://{GW}:5055: 2 found: web1 (i-" in said, said
    assert "web2 (i-" in said and "web3" not in said
    assert "listed: db" in said and "web1 migrates" in said
    for name in ("web1", "web2"):
        assert APP_MARKER in served(ADDR[name]), name
    assert ssh(sandbox, "web3", "test -e /srv/sample && echo there || echo absent") == "absent"
    assert "web3" not in first.stdout.split(" recap (", 1)[1]


def test_the_archive_is_in_the_bucket_once_and_each_host_checked_its_digest(first, sandbox,
                                                                            aws):
    stored = artifacts(aws)
    assert len(stored) == 1, list(stored)
    ((key, body),) = stored.items()
    digest = hashlib.sha256(body).hexdigest()
    assert key == f"releases/{digest}.tar.gz"
    assert len(re.findall(r"uploaded s3://", first.stdout)) == 1
    for name in ("web1", "web2"):
        assert ssh(sandbox, name, "sudo cat /srv/sample/current/.railsfab-artifact") == digest
        listing = ssh(sandbox, name, "sudo ls -a /srv/sample/current/")
        assert ".railsfab-artifact.tar.gz" not in listing  # unpacked, then removed
    assert current(sandbox, "web1") == current(sandbox, "web2")


def test_a_second_deploy_changes_nothing_and_sends_nothing(folder, first):
    r = run_fab(folder / "hosts.yaml", "deploy")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 changed" in r.stdout
    assert not re.search(r"^\s+local\s+\w+\s+artifact", r.stdout, re.M), r.stdout


def test_the_auto_scaling_group_gives_the_same_hosts(folder, first):
    r = run_fab(folder / "hosts.yaml", "releases", "--stage", "fleet-asg")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Auto Scaling group fleet-web" in r.stdout and "2 found" in r.stdout
    assert re.search(r"^web1\b", r.stdout, re.M) and re.search(r"^web2\b", r.stdout, re.M)
    assert not re.search(r"^web3\b", r.stdout, re.M)


def test_a_tampered_archive_is_refused_on_the_host_that_fetches_it(folder, first, sandbox,
                                                                    aws):
    ((key, body),) = artifacts(aws).items()
    aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=body + b"\0planted")
    aws["ec2"].create_tags(Resources=[instance_id(aws, "web3")],
                           Tags=[{"Key": "Role", "Value": "web"}])
    before = {n: current(sandbox, n) for n in ("web1", "web2")}

    r = run_fab(folder / "hosts.yaml", "deploy")
    out = " ".join((r.stdout + r.stderr).split())  # the failure block wraps long lines
    assert r.returncode == 1, out
    assert "fab deploy failed on web3, step release" in out, out
    assert "is not the one railsfab built" in out and "refused, nothing unpacked" in out, out
    assert f"aws s3 rm s3://{BUCKET}/{key}" in out, out
    assert "X-Amz-Signature" not in out  # the presigned URL is never shown
    assert ssh(sandbox, "web3", "test -e /srv/sample/current && echo yes || echo no") == "no"
    assert {n: current(sandbox, n) for n in ("web1", "web2")} == before
    for name in ("web1", "web2"):
        assert "changed=0" in recap(r.stdout, name)


def test_a_host_added_to_the_tag_comes_up_to_the_fleets_release_alone(folder, first, sandbox,
                                                                       aws):
    ((key, _),) = artifacts(aws).items()
    aws["s3"].delete_object(Bucket=BUCKET, Key=key)  # the refusal's fix
    release = current(sandbox, "web1")

    r = run_fab(folder / "hosts.yaml", "deploy")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 found" in r.stdout
    for name in ("web1", "web2"):
        assert "changed=0" in recap(r.stdout, name), recap(r.stdout, name)
        assert current(sandbox, name) == release
    assert current(sandbox, "web3") == release
    assert APP_MARKER in served(ADDR["web3"])
    stored = artifacts(aws)
    assert list(stored) == [key]  # the same archive, rebuilt byte for byte
    digest = hashlib.sha256(stored[key]).hexdigest()
    assert f"releases/{digest}.tar.gz" == key
    for name in ("web1", "web2", "web3"):
        assert ssh(sandbox, name, "sudo cat /srv/sample/current/.railsfab-artifact") == digest
