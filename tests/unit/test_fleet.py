"""Fleets: `hosts_from` in hosts.yaml (shape, one line per mistake), how found instances and
listed hosts combine, the progress line, host keys, and `app.artifact: s3`'s pieces."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

from railsfab import artifact, fleet, inventory, onhost, remote
from railsfab.errors import ConfigError
from railsfab.facts import Facts
from railsfab.inventory import Host
from railsfab.ops import desired
from tests.conftest import run_fab

ROOT = Path(__file__).resolve().parents[2]

FLEET = """\
default_stage: prod
stages:
  prod:
    hosts_from: {tag: {Role: web}}
    hosts:
      - {name: db, address: 10.0.1.20, roles: [db]}
    app: {name: shop, source: ../shop, deploy_to: /srv/shop}
    aws: {region: ap-northeast-1, stack_name: shop, bucket: shop-uploads}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "hosts.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as exc:
        inventory.load(write(tmp_path, text))
    assert exc.value.exit_code == 2
    return exc.value.message.replace(str(tmp_path / "hosts.yaml"), "hosts.yaml")


def with_hosts_from(value: str) -> str:
    return FLEET.replace("hosts_from: {tag: {Role: web}}", f"hosts_from: {value}")


# --- hosts.yaml ------------------------------------------------------------------------


@pytest.mark.parametrize("value, source, says", [
    ("{tag: {Role: web, Env: prod}}", "tag", "tag Role=web, Env=prod"),
    ("{auto_scaling_group: shop-web, address: public}", "auto_scaling_group",
     "Auto Scaling group shop-web"),
    ("{target_group: stack}", "target_group", "target group of the stack"),
    ("{target_group: 'arn:aws:elasticloadbalancing:ap-northeast-1:123456789012:targetgroup/"
     "shop/0123456789abcdef'}", "target_group", "target group shop"),
])
def test_each_source_of_hosts_loads(tmp_path, value, source, says):
    inv = inventory.load(write(tmp_path, with_hosts_from(value)))
    hf = inv.stage.hosts_from
    assert (hf.source, hf.describe()) == (source, says)
    assert [h.name for h in inv.hosts()] == ["db"]  # the rest come from AWS when a task runs


@pytest.mark.parametrize("value, says", [
    ("{}", "stages.prod.hosts_from: say where the web hosts come from: one of tag, "
           "auto_scaling_group, target_group (e.g. hosts_from: {tag: {Role: web}})"),
    ("web", "stages.prod.hosts_from: expected a mapping naming one of tag, auto_scaling_group, "
            "target_group (e.g. hosts_from: {tag: {Role: web}}), got 'web'"),
    ("{tag: {Role: web}, auto_scaling_group: shop-web}",
     "stages.prod.hosts_from: one source of hosts, not 2 (tag and auto_scaling_group): keep "
     "one (e.g. hosts_from: {tag: {Role: web}})"),
    ("{tags: {Role: web}}", "stages.prod.hosts_from.tags: unknown key (did you mean 'tag'?)"),
    ("{tag: {}}", "stages.prod.hosts_from: tag: give at least one KEY: VALUE"),
    ("{tag: {Role: 'web; rm -rf /'}}", "stages.prod.hosts_from.tag.Role: 'web; rm -rf /' is "
                                       "not an EC2 tag value"),
    ("{auto_scaling_group: 'shop web!'}", "stages.prod.hosts_from.auto_scaling_group: "
                                          "'shop web!' is not an Auto Scaling group name"),
    ("{target_group: shop}", "stages.prod.hosts_from.target_group: 'shop' is not 'stack' (the "
                             "stack's target group) or a target group ARN"),
    ("{tag: {Role: web}, address: elastic}",
     "stages.prod.hosts_from.address: expected one of 'private' or 'public', got 'elastic'"),
])
def test_a_bad_hosts_from_is_one_line_with_the_fix(tmp_path, value, says):
    assert error_of(tmp_path, with_hosts_from(value)).startswith(f"hosts.yaml: {says}")


def test_a_stage_needs_hosts_or_hosts_from(tmp_path):
    text = FLEET.replace("    hosts_from: {tag: {Role: web}}\n", "").replace(
        "    hosts:\n      - {name: db, address: 10.0.1.20, roles: [db]}\n", "")
    assert error_of(tmp_path, text) == (
        "hosts.yaml: stages.prod: hosts: list the hosts, or read the web hosts from AWS with "
        "hosts_from (e.g. hosts_from: {tag: {Role: web}})")


def test_hosts_from_alone_is_a_stage(tmp_path):
    text = FLEET.replace("    hosts:\n      - {name: db, address: 10.0.1.20, roles: [db]}\n",
                         "")
    assert inventory.load(write(tmp_path, text)).stage.hosts == []


def test_the_stacks_target_group_needs_a_stack(tmp_path):
    text = with_hosts_from("{target_group: stack}").replace("stack_name: shop, ", "")
    assert error_of(tmp_path, text) == (
        "hosts.yaml: stages.prod: hosts_from.target_group is 'stack' but the stage has no "
        "aws.stack_name (or aws.target_group_arn): name the stack, or give the target group's "
        "ARN")


def test_artifact_s3_needs_the_stages_bucket(tmp_path):
    text = FLEET.replace("deploy_to: /srv/shop}", "deploy_to: /srv/shop, artifact: s3}")
    assert inventory.load(write(tmp_path, text)).stage.app.artifact == "s3"
    assert error_of(tmp_path, text.replace(", bucket: shop-uploads", "")) == (
        "hosts.yaml: stages.prod: app.artifact is s3 but the stage has no aws.bucket: name the "
        "stage's bucket (aws.bucket), or use artifact: upload")
    assert "expected one of 'upload' or 's3'" in error_of(
        tmp_path, text.replace("artifact: s3", "artifact: scp"))


SANDBOX = """\
    sandbox:
      bridge: rffl0
      subnet: 10.240.64.0/18
      gateway: 10.240.64.1
      instances:
        - {name: web1, address: 10.240.65.11, tags: {Role: web}, auto_scaling_group: shop-web}
        - {name: web2, address: 10.240.65.12}
"""


def sandbox_fleet(instances_fix=lambda s: s) -> str:
    return FLEET.replace("10.0.1.20", "10.240.65.20").replace(
        "    app:", instances_fix(SANDBOX) + "    app:")


def test_sandbox_instances_load_and_are_checked(tmp_path):
    inv = inventory.load(write(tmp_path, sandbox_fleet()))
    web1, web2 = inv.stage.sandbox.instances
    assert (web1.tags, web1.auto_scaling_group, web2.tags) == ({"Role": "web"}, "shop-web", {})
    from railsfab.sandbox import fleet as sandbox_fleet_mod

    assert [h.name for h in sandbox_fleet_mod.hosts(inv)] == ["db", "web1", "web2"]
    assert error_of(tmp_path, sandbox_fleet(lambda s: s.replace("name: web2", "name: db"))) == (
        "hosts.yaml: stages.prod: sandbox.instances: names must differ from each other and "
        "from the stage's hosts; repeated: db")
    assert error_of(tmp_path, sandbox_fleet(lambda s: s.replace("10.240.65.12", "10.9.1.2"))
                    ) == ("hosts.yaml: stages.prod: sandbox host web2 address 10.9.1.2 must be "
                          "an IP inside 10.240.64.0/18")


def test_fab_refuses_a_bad_hosts_from_with_exit_2(tmp_path):
    bad = write(tmp_path, with_hosts_from("{tag: {Role: web}, auto_scaling_group: web}"))
    proc = run_fab(bad, "deploy", cwd=tmp_path, bare=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out
    assert "hosts.yaml: stages.prod.hosts_from: one source of hosts, not 2" in out
    assert "fab deploy failed" in out


# --- combining what is found with what is listed ---------------------------------------


def inst(name: str, address: str, iid: str, launched: str = "2026-11-30T10:00:00",
         az: str = "ap-northeast-1a", may_migrate: bool = True) -> fleet.Instance:
    return fleet.Instance(name=name, address=address, roles=["web"], instance_id=iid, az=az,
                          launched=launched, may_migrate=may_migrate)


def test_found_instances_join_the_listed_hosts_and_the_oldest_tagged_one_migrates():
    db = Host(name="db", address="10.0.1.20", roles=["db"])
    found = [inst("web2", "10.0.1.12", "i-0000000000000002", "2026-11-30T09:00:00"),
             inst("web10", "10.0.1.13", "i-0000000000000003"),
             inst("web1", "10.0.1.11", "i-0000000000000001")]
    hosts = fleet.combine([db], found)
    assert [h.name for h in hosts] == ["db", "web1", "web2", "web10"]
    assert [h.name for h in hosts if "migrate" in h.roles] == ["web2"]


def test_an_instance_without_the_migrate_tag_never_migrates(tmp_path):
    """An instance anyone could start with the stage's tag would get every secret."""
    db = Host(name="db", address="10.0.1.20", roles=["db"])
    found = [inst("old", "10.0.1.12", "i-0000000000000002", "2020-01-01T00:00:00",
                  may_migrate=False),
             inst("web1", "10.0.1.11", "i-0000000000000001")]
    assert [h.name for h in fleet.combine([db], found) if "migrate" in h.roles] == ["web1"]
    hosts = fleet.combine([db], found[:1])
    assert not any("migrate" in h.roles for h in hosts)
    inv = inventory.load(write(tmp_path, FLEET))
    assert fleet.line(inv, hosts).endswith(
        "; no host migrates (none listed with role migrate, none tagged railsfab:migrate=true)")
    record = {"InstanceId": "i-0abc0abc0abc0abc0", "PrivateIpAddress": "10.0.1.11",
              "Tags": [{"Key": "railsfab:migrate", "Value": "true"}]}
    assert fleet._instance(record, "private", inv).may_migrate
    record["Tags"] = [{"Key": "railsfab:migrate", "Value": "yes"}]
    assert not fleet._instance(record, "private", inv).may_migrate


def test_a_listed_host_that_is_also_found_stays_as_listed_and_keeps_the_migration():
    web1 = Host(name="app1", address="10.0.1.11", roles=["web", "migrate"])
    found = [inst("web1", "10.0.1.11", "i-0000000000000001"),
             inst("web2", "10.0.1.12", "i-0000000000000002", "2026-11-01T00:00:00")]
    hosts = fleet.combine([web1], found)
    assert [(h.name, h.roles, h.instance_id) for h in hosts] == [
        ("app1", ["web", "migrate"], "i-0000000000000001"),
        ("web2", ["web"], "i-0000000000000002")]


def test_a_name_tag_shared_or_taken_gives_way_to_the_instance_id():
    db = Host(name="db", address="10.0.1.20", roles=["db"])
    found = [inst("shop-web", "10.0.1.11", "i-0000000000000001"),
             inst("shop-web", "10.0.1.12", "i-0000000000000002"),
             inst("db", "10.0.1.13", "i-0000000000000003")]
    names = [h.name for h in fleet.combine([db], found)]
    assert names == ["db", "i-0000000000000001", "i-0000000000000002", "i-0000000000000003"]


def test_an_instance_record_becomes_a_host_by_the_chosen_address(tmp_path):
    inv = inventory.load(write(tmp_path, FLEET))
    record = {"InstanceId": "i-0abc0abc0abc0abc0", "PrivateIpAddress": "10.0.1.11",
              "PublicIpAddress": "203.0.113.9", "Placement": {"AvailabilityZone": "ap-1c"},
              "Tags": [{"Key": "Name", "Value": "Web Server"}]}
    h = fleet._instance(record, "public", inv)
    assert (h.name, h.address, h.az) == ("i-0abc0abc0abc0abc0", "203.0.113.9", "ap-1c")
    del record["PublicIpAddress"]
    with pytest.raises(fleet.RailsfabError) as exc:
        fleet._instance(record, "public", inv)
    assert "has no public address" in exc.value.message
    assert "hosts_from.address: private" in exc.value.fix


def test_the_progress_line_says_where_the_hosts_came_from(tmp_path):
    inv = inventory.load(write(tmp_path, FLEET))
    hosts = fleet.combine(inv.stage.hosts, [inst("web1", "10.0.1.11", "i-0000000000000001")])
    assert fleet.line(inv, hosts) == (
        "  hosts    tag Role=web in ap-northeast-1: 1 found: web1 (i-0000000000000001, "
        "10.0.1.11, ap-northeast-1a); listed: db; web1 migrates")


# --- host keys -------------------------------------------------------------------------


def public_key_line(address: str) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return f"{address} {key}\n"


def test_only_hosts_missing_from_known_hosts_are_unknown(tmp_path):
    inv = inventory.load(write(tmp_path, FLEET))
    inv.known_hosts.parent.mkdir(parents=True)
    inv.known_hosts.write_text(public_key_line("10.0.1.11"))
    hosts = [inst("web1", "10.0.1.11", "i-0000000000000001"),
             inst("web2", "10.0.1.12", "i-0000000000000002")]
    assert [h.name for h in fleet.unknown_keys(inv, hosts)] == ["web2"]


CONSOLE = """\
[   12.3] cloud-init[512]: Cloud-init v. 23.1 running 'modules:final'
<14>Nov 30 10:00:01 ec2:
<14>Nov 30 10:00:01 ec2: #############################################################
<14>Nov 30 10:00:01 ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----
<14>Nov 30 10:00:01 ec2: 256 SHA256:6Jd3CGTn1yGZjRdXHtA1Q1bVtJ2oM+w6k7zVb1yqz2Q root@ip-a (ECDSA)
<14>Nov 30 10:00:01 ec2: 256 SHA256:Zq0bbS4pD3m0aNqQzDLhC0nd7C2tV4m1v5nkYJmZr1Y root@ip-a (ED25519)
<14>Nov 30 10:00:01 ec2: -----END SSH HOST KEY FINGERPRINTS-----
"""


def test_the_consoles_fingerprints_are_read_from_cloud_inits_block():
    assert fleet.parse_fingerprints(CONSOLE) == [
        "SHA256:6Jd3CGTn1yGZjRdXHtA1Q1bVtJ2oM+w6k7zVb1yqz2Q (ECDSA)",
        "SHA256:Zq0bbS4pD3m0aNqQzDLhC0nd7C2tV4m1v5nkYJmZr1Y (ED25519)"]
    assert fleet.parse_fingerprints("Linux version 6.1 ...\nlogin:") == []
    import base64

    assert fleet.parse_fingerprints(fleet._decoded(base64.b64encode(CONSOLE.encode()).decode())
                                    )[1].endswith("(ED25519)")


# --- the artifact ----------------------------------------------------------------------


def test_the_presigned_url_goes_to_curl_as_a_config_line_on_stdin():
    url = 'http://10.0.0.1:5055/b/releases/x.tar.gz?X-Amz-Signature=ab&a="q"\\'
    assert artifact.curl_config(url) == (
        b'url = "http://10.0.0.1:5055/b/releases/x.tar.gz?X-Amz-Signature=ab&a=\\"q\\"\\\\"\n')
    script = onhost.load("fetch_release.sh")
    assert "--config -" in script and "$URL" not in script
    assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0


def stored(digest: str = "a" * 64) -> artifact.Artifact:
    a = artifact.Artifact.__new__(artifact.Artifact)
    a.bucket, a.digest = "shop-uploads", digest
    return a


def test_a_digest_mismatch_names_the_host_the_step_and_the_way_out():
    res = remote.Result(11, "sha256 " + "b" * 64 + "\n", "")
    err = artifact.fetch_failed("web3", stored(), res)
    assert (err.host, err.step) == ("web3", "release")
    assert err.message == (f"the release archive s3://shop-uploads/releases/{'a' * 64}.tar.gz is "
                           f"not the one railsfab built: refused, nothing unpacked\n"
                           f"its sha256 {'b' * 64}\nexpected   {'a' * 64}")
    assert f"aws s3 rm s3://shop-uploads/releases/{'a' * 64}.tar.gz" in err.fix
    fetch = artifact.fetch_failed("web3", stored(), remote.Result(
        10, "", "curl: (22) The requested URL returned error: 403"))
    assert "could not fetch" in fetch.message and "error: 403" in fetch.message
    assert "X-Amz" not in fetch.message + fetch.fix


# --- one release across the fleet ------------------------------------------------------


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fleet")
    doc = yaml.safe_load(FLEET)
    doc["stages"]["prod"]["app"].update(source=str(ROOT / "examples/sample_app"),
                                        artifact="s3")
    (tmp / "hosts.yaml").write_text(yaml.safe_dump(doc))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SECRET_KEY_BASE", "k" * 64)
        return desired.build(inventory.load(tmp / "hosts.yaml"), release="20261201000000")


def serving(d, release: str, *, source: str | None = None, others=()) -> Facts:
    meta = {**d.meta("good"), "source": source or d.digests.release}
    rels = {r: {"id": r, **meta} for r in (release, *others)}
    return Facts({"current": release, "releases": rels})


def test_a_joining_host_takes_the_release_id_its_peers_serve(d):
    fresh = Facts({"current": None, "releases": {}})
    assert desired.settled(d, [serving(d, "20261130000000"), fresh]).release == "20261130000000"
    assert desired.settled(d, [fresh]).release == d.release  # nobody serves it: a new id
    older = serving(d, "20261129000000", source="an older source")
    assert desired.settled(d, [older, fresh]).release == d.release
    # a host that keeps that release beside another current one (after a rollback)
    rolled_back = serving(d, "20261129000000", source="x", others=("20261130000000",))
    assert desired.settled(d, [serving(d, "20261130000000"), rolled_back]).release == d.release


def test_the_release_archive_is_the_same_bytes_each_time_it_is_built(d):
    first = d.release_archive()
    d.source._archive = None  # built again from the same files
    assert d.release_archive() == first


def test_with_an_artifact_the_release_step_fetches_instead_of_uploading(d):
    fresh = Facts({"current": None, "releases": {}, "current_meta": {}})
    from railsfab.ops.base import Plan
    from railsfab.ops.release import release

    change = release(fresh, d, Plan())
    assert change.what == "create release 20261201000000 from its archive in " \
                          "s3://shop-uploads/releases/"
    assert change.scripts == () and change.run is not None


def test_a_deploy_with_no_host_to_migrate_stops_before_any_connection(tmp_path):
    from railsfab.deploy import _some_host_migrates

    inv = inventory.load(write(tmp_path, FLEET))
    inv.stage = inv.stage.model_copy(update={"hosts": fleet.combine(
        inv.stage.hosts, [inst("web1", "10.0.1.11", "i-0000000000000001", may_migrate=False)])})
    with pytest.raises(fleet.RailsfabError) as exc:
        _some_host_migrates(inv)
    assert "no instance found tagged railsfab:migrate=true" in exc.value.message
    assert "roles [web, migrate]" in exc.value.fix
    inv.stage = inv.stage.model_copy(update={"hosts": fleet.combine(
        inv.stage.hosts[:1], [inst("web1", "10.0.1.11", "i-0000000000000001")])})
    _some_host_migrates(inv)  # the tagged one migrates
