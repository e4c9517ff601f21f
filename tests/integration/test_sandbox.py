"""The sandbox hosts behave like EC2 instances: what later deploy tests rely on."""

from __future__ import annotations

import subprocess

import boto3
import pytest
import testinfra

from railsfab import remote
from railsfab.errors import RailsfabError


@pytest.fixture(scope="session")
def web1(sandbox):
    return testinfra.get_host("ssh://web1", ssh_config=str(sandbox.ssh_config))


def ssh(sandbox, *args: str, user: str | None = None) -> subprocess.CompletedProcess:
    argv = ["ssh", "-F", str(sandbox.ssh_config), "-o", "BatchMode=yes"]
    if user:
        argv += ["-l", user]
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=60)


def test_admin_logs_in_with_strict_host_key_checking(sandbox):
    r = ssh(sandbox, "web1", "id -un")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "admin"
    assert "StrictHostKeyChecking yes" in sandbox.ssh_config.read_text()


def test_unknown_host_key_is_refused_not_accepted(sandbox, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    r = subprocess.run(
        ["ssh", "-F", str(sandbox.ssh_config), "-o", f"UserKnownHostsFile={empty}",
         # A fresh connection: a shared master connection would skip the host key check.
         "-o", "ControlMaster=no", "-o", "ControlPath=none",
         "-o", "BatchMode=yes", "web1", "true"],
        capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 255
    assert "Host key verification failed" in r.stderr
    assert empty.read_text() == ""  # nothing was auto-added


def test_fabric_connections_refuse_unknown_and_changed_host_keys(sandbox, inv, tmp_path):
    web1 = inv.hosts(only="web1")[0]
    conn = remote.open_checked(inv, web1)
    assert conn.run("hostname", hide=True).stdout.strip() == "web1"
    conn.close()

    known = inv.known_hosts.read_text()
    try:
        inv.known_hosts.write_text("")
        with pytest.raises(RailsfabError, match="not in .*known_hosts; unknown host keys"):
            remote.open_checked(inv, web1)
        # web2's keys filed under web1's address: a changed host key.
        web2_addr = inv.hosts(only="web2")[0].address
        swapped = [ln.replace(web2_addr, web1.address, 1) for ln in known.splitlines()
                   if ln.startswith(web2_addr + " ")]
        inv.known_hosts.write_text("\n".join(swapped) + "\n")
        with pytest.raises(RailsfabError, match="does not match"):
            remote.open_checked(inv, web1)
    finally:
        inv.known_hosts.write_text(known)


def test_passwordless_sudo(web1):
    assert web1.run("sudo -n true").rc == 0


def test_systemd_is_running(web1):
    assert web1.run("systemctl is-system-running").stdout.strip() == "running"
    assert web1.service("ssh").is_running


def test_root_login_refused(sandbox):
    r = ssh(sandbox, "web1", "true", user="root")
    assert r.returncode == 255
    assert "Permission denied" in r.stderr


def test_each_host_has_its_own_host_keys(sandbox):
    keys = {}
    for name in ("web1", "web2", "db"):
        keys[name] = ssh(sandbox, name, "cat /etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[1]
    assert len(set(keys.values())) == 3


def test_web_host_reaches_mariadb_on_3306(sandbox, inv):
    r = ssh(sandbox, "web1", "timeout 5 bash -c 'echo > /dev/tcp/db/3306' && echo open")
    assert r.stdout.strip() == "open", r.stderr
    # The app's database and user exist, with the password from the local secrets file.
    db = inv.stage.app.database
    count = ssh(sandbox, "db", "sudo mysql -N -e \"SELECT COUNT(*) FROM mysql.user "
                f"WHERE user='{db.user}'; SHOW DATABASES LIKE '{db.name}'\"")
    assert count.stdout.split() == ["1", db.name]


def test_aws_endpoint_answers_hosts_and_this_machine(sandbox, inv):
    r = ssh(sandbox, "web1", "curl -s -o /dev/null -w '%{http_code}' "
            f"{inv.stage.aws.endpoint_url}/moto-api/")
    assert r.stdout == "200"
    s3 = boto3.client("s3", endpoint_url=inv.stage.aws.endpoint_url,
                      region_name=inv.stage.aws.region, aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    s3.create_bucket(Bucket="itest-probe",
                     CreateBucketConfiguration={"LocationConstraint": inv.stage.aws.region})
    assert "itest-probe" in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_apt_proxy_reaches_only_the_debian_mirror(sandbox, inv):
    r = ssh(sandbox, "web1", f"curl -s -o /dev/null -w '%{{http_code}}' -x {inv.stage.apt_proxy}"
            " http://example.com/")
    assert r.stdout == "403"  # tinyproxy's filter: anything but the mirror is refused
    r = ssh(sandbox, "web1", "curl -s -m 3 -o /dev/null -w '%{http_code}' http://example.com/")
    assert r.stdout == "000"  # and there is no route around the proxy


def test_second_up_changes_nothing(sandbox):
    from railsfab.report import Reporter

    rep = Reporter(quiet=True)
    type(sandbox)(sandbox.inv, rep).up()
    assert [r for r in rep.results if r.status != "ok"] == []
