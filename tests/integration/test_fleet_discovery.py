"""`hosts_from` against a real AWS API: moto in server mode on 127.0.0.1, with EC2
instances, an Auto Scaling group and a target group made through boto3 as on AWS. No sandbox
hosts: what is checked is which instances each source finds, how they become hosts, and
that an instance not in known_hosts is refused before any SSH (`fab` as a user runs it)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import boto3
import pytest
import yaml

from railsfab import fleet, inventory
from tests.conftest import run_fab

ROOT = Path(__file__).resolve().parents[2]
REGION = "ap-northeast-1"


@pytest.fixture(scope="module")
def endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(autouse=True)
def credentials(monkeypatch):
    # moto takes any key; these never leave this machine (the endpoint is on 127.0.0.1)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture(scope="module")
def fleet_in_aws(endpoint):
    """web1, web2 (Role=web, in the group and the target group; web2 also tagged to run the
    migrations), web3 untagged, web4 tagged but stopped."""
    def client(name):
        return boto3.client(name, region_name=REGION, endpoint_url=endpoint,
                            aws_access_key_id="testing", aws_secret_access_key="testing")
    ec2, asg, elbv2 = client("ec2"), client("autoscaling"), client("elbv2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24",
                               AvailabilityZone=f"{REGION}c")["Subnet"]["SubnetId"]
    ids = {}
    for name, last, tagged in (("web1", 11, True), ("web2", 12, True), ("web3", 13, False),
                               ("web4", 14, True)):
        tags = [{"Key": "Name", "Value": name}] + ([{"Key": "Role", "Value": "web"}]
                                                   if tagged else [])
        if name == "web2":  # hosts_from.migrate_tag's default
            tags.append({"Key": "railsfab:migrate", "Value": "true"})
        ids[name] = ec2.run_instances(
            ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=subnet,
            PrivateIpAddress=f"10.9.1.{last}",
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )["Instances"][0]["InstanceId"]
    ec2.stop_instances(InstanceIds=[ids["web4"]])
    asg.create_auto_scaling_group(AutoScalingGroupName="shop-web", InstanceId=ids["web1"],
                                  MinSize=0, MaxSize=8, DesiredCapacity=0,
                                  VPCZoneIdentifier=subnet)
    asg.attach_instances(AutoScalingGroupName="shop-web", InstanceIds=[ids["web1"], ids["web2"]])
    tg = elbv2.create_target_group(Name="shop", Protocol="HTTP", Port=80, VpcId=vpc,
                                   TargetType="instance")["TargetGroups"][0]["TargetGroupArn"]
    elbv2.register_targets(TargetGroupArn=tg, Targets=[{"Id": ids["web2"]}, {"Id": ids["web3"]}])
    return {"ids": ids, "target_group": tg, "vpc": vpc, "ec2": ec2}


def stage_file(tmp_path: Path, endpoint: str, hosts_from: dict, *, known: list[str],
               **aws) -> Path:
    doc = {"default_stage": "prod", "stages": {"prod": {
        "hosts_from": hosts_from,
        "hosts": [{"name": "db", "address": "10.9.1.20", "roles": ["db"]}],
        "app": {"name": "shop", "source": "app", "deploy_to": "/srv/shop"},
        "aws": {"region": REGION, "endpoint_url": endpoint, **aws}}}}
    path = tmp_path / "hosts.yaml"
    path.write_text(yaml.safe_dump(doc))
    if known:
        from tests.unit.test_fleet import public_key_line

        (tmp_path / ".railsfab").mkdir(exist_ok=True)
        (tmp_path / ".railsfab/known_hosts").write_text(
            "".join(public_key_line(a) for a in known))
    return path


def resolved(path: Path) -> tuple[list, list[str]]:
    inv = inventory.load(path)
    said: list[str] = []
    fleet.resolve(inv, said.append)
    return inv.stage.hosts, said


ALL = [f"10.9.1.{n}" for n in (11, 12, 13, 14)]


def test_a_tag_finds_the_running_tagged_instances(tmp_path, endpoint, fleet_in_aws):
    hosts, said = resolved(stage_file(tmp_path, endpoint, {"tag": {"Role": "web"}}, known=ALL))
    assert [(h.name, h.address, h.roles) for h in hosts] == [
        ("db", "10.9.1.20", ["db"]), ("web1", "10.9.1.11", ["web"]),
        ("web2", "10.9.1.12", ["web", "migrate"])]
    ids = fleet_in_aws["ids"]
    assert [h.instance_id for h in hosts[1:]] == [ids["web1"], ids["web2"]]
    assert hosts[1].az == f"{REGION}c"
    assert said == [f"  hosts    tag Role=web in {endpoint}: 2 found: web1 ({ids['web1']}, "
                    f"10.9.1.11, {REGION}c), web2 ({ids['web2']}, 10.9.1.12, {REGION}c); "
                    "listed: db; web2 migrates"]  # the oldest tagged for it, not web1


def test_an_instance_with_the_tag_in_another_vpc_is_refused_and_named(tmp_path, endpoint,
                                                                      fleet_in_aws):
    """Anyone who can tag an instance in the account (another VPC, another team) would
    otherwise join the stage and be given its env file."""
    ec2 = fleet_in_aws["ec2"]
    other = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=other, CidrBlock="10.8.1.0/24")["Subnet"]["SubnetId"]
    stranger = ec2.run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=subnet,
        PrivateIpAddress="10.8.1.66", TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": "Name", "Value": "web9"}, {"Key": "Role", "Value": "web"}]}],
    )["Instances"][0]["InstanceId"]
    try:
        hosts, said = resolved(stage_file(tmp_path, endpoint, {"tag": {"Role": "web"}},
                                          known=[*ALL, "10.8.1.66"], vpc_id=fleet_in_aws["vpc"]))
        assert [h.name for h in hosts] == ["db", "web1", "web2"]
        assert said[0].endswith(f"; refused: {stranger} (in {other}, not the stage's "
                                f"{fleet_in_aws['vpc']})")
        # without a VPC to hold it to (no vpc_id, no stack), the tag alone decides
        hosts, _ = resolved(stage_file(tmp_path, endpoint, {"tag": {"Role": "web"}},
                                       known=[*ALL, "10.8.1.66"]))
        assert "web9" in [h.name for h in hosts]
    finally:
        ec2.terminate_instances(InstanceIds=[stranger])


def test_an_auto_scaling_group_gives_its_inservice_instances(tmp_path, endpoint, fleet_in_aws):
    hosts, said = resolved(stage_file(tmp_path, endpoint, {"auto_scaling_group": "shop-web"},
                                      known=ALL))
    assert [h.name for h in hosts] == ["db", "web1", "web2"]
    assert "Auto Scaling group shop-web" in said[0]


def test_a_target_group_gives_its_targets(tmp_path, endpoint, fleet_in_aws):
    hosts, _ = resolved(stage_file(tmp_path, endpoint,
                                   {"target_group": fleet_in_aws["target_group"]}, known=ALL))
    assert [h.name for h in hosts] == ["db", "web2", "web3"]


def test_a_group_that_does_not_exist_is_named_with_the_fix(tmp_path, endpoint, fleet_in_aws):
    with pytest.raises(fleet.RailsfabError) as exc:
        resolved(stage_file(tmp_path, endpoint, {"auto_scaling_group": "nope"}, known=ALL))
    assert exc.value.message == f"no Auto Scaling group nope in {REGION}"
    assert "hosts_from.auto_scaling_group" in exc.value.fix


def test_no_instance_found_is_refused_with_the_fix(tmp_path, endpoint, fleet_in_aws):
    with pytest.raises(fleet.RailsfabError) as exc:
        resolved(stage_file(tmp_path, endpoint, {"tag": {"Role": "worker"}}, known=ALL))
    assert exc.value.message.startswith("hosts_from tag Role=worker found no running "
                                        "instance in ap-northeast-1")
    assert exc.value.fix.startswith("tag the web instances Role=worker (running)")


def test_an_instance_not_in_known_hosts_is_refused_before_any_ssh(tmp_path, endpoint,
                                                                  fleet_in_aws):
    path = stage_file(tmp_path, endpoint, {"tag": {"Role": "web"}}, known=["10.9.1.11"])
    (tmp_path / "app").mkdir()
    r = run_fab(path, "releases", timeout=120, cwd=tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    web2 = fleet_in_aws["ids"]["web2"]
    assert "fab releases failed, step hosts" in out
    assert (f"1 host(s) from tag Role=web not in {tmp_path}/.railsfab/known_hosts; unknown "
            "host keys are refused") in out
    # moto's console output has no cloud-init block: said so, not guessed
    assert f"web2 ({web2}, 10.9.1.12): no fingerprints in its console output (yet)" in out
    assert "ssh-keyscan -t ed25519 10.9.1.12" in out
    assert "Traceback" not in out


def test_artifacts_are_put_once_and_follow_keep_releases(tmp_path, endpoint):
    from railsfab import artifact

    path = stage_file(tmp_path, endpoint, {"tag": {"Role": "web"}}, known=[])
    doc = yaml.safe_load(path.read_text())
    doc["stages"]["prod"]["app"].update(artifact="s3", keep_releases=3)
    doc["stages"]["prod"]["aws"]["bucket"] = "shop-artifacts"
    path.write_text(yaml.safe_dump(doc))
    boto3.client("s3", region_name=REGION, endpoint_url=endpoint).create_bucket(
        Bucket="shop-artifacts", CreateBucketConfiguration={"LocationConstraint": REGION})
    inv = inventory.load(path)
    for n in range(5):
        a = artifact.Artifact(inv)
        body = f"release {n}".encode()
        assert a.put(body, f"2026120100000{n}")[0] is True
        assert a.put(body, f"2026120100000{n}") == (False, f"{a.where} already there (0 KiB)")
        if n == 3:
            kept = a
    assert kept.prune() == (True, "kept 3 in s3://shop-artifacts/releases/, removed 2")
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=endpoint)
    left = [o["Key"] for o in s3.list_objects_v2(Bucket="shop-artifacts")["Contents"]]
    digests = [hashlib.sha256(f"release {n}".encode()).hexdigest() for n in range(5)]
    # the deployed one (3) stays whatever its age, with the newest others
    assert sorted(left) == sorted(f"releases/{digests[n]}.tar.gz" for n in (2, 3, 4))
    assert kept.prune() == (False, "kept 3 in s3://shop-artifacts/releases/")
