"""`fab check` on real hosts: all green when healthy; each injected fault named by its layer.

Faults are injected on web2 only, one at a time, and undone before the next; web1 stays
healthy throughout, so each run also proves the diagnosis is per host.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import run_fab, run_host_spec
from tests.integration.check_faults import FAULTS, SITE, UNIT

# after an undo: the app answers its health path through nginx again (its workers booted),
# before the next fault is injected (30 s at most: else the undo failed, said here); the
# units' start counters are reset (systemd refuses a 6th start within 10 s, and the faults
# restart the app server in quick succession)
SETTLED = ("for i in $(seq 150); do curl -fs -o /dev/null -m 2 http://127.0.0.1/up && "
           f"systemctl reset-failed {UNIT} nginx && exit 0; sleep 0.2; done; "
           "echo 'the fault was not undone: /up does not answer 200' >&2; exit 1")


def ssh(sandbox, host: str, script: str) -> None:
    r = subprocess.run(["ssh", "-F", str(sandbox.ssh_config), "-o", "BatchMode=yes", host,
                        "sudo -n sh -c " + _q(script)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, f"{script}: {r.stderr}"


def _q(s: str) -> str:
    import shlex

    return shlex.quote(s)


def verdicts(stage_file) -> tuple[int, dict]:
    r = run_fab(stage_file, "check", "--json")
    return r.returncode, json.loads(r.stdout)


def first_broken(vs: list[dict]) -> dict | None:
    """The cause `fab check` names (the first broken layer, unless it blames another)."""
    return next((v for v in vs if v["role"] == "cause"), None)


@pytest.fixture(scope="module")
def healthy(stages):
    """unicorn behind the ALB: every layer, the load balancer's included, has a verdict."""
    return stages.unicorn(alb=True)


def test_healthy_hosts_are_all_green(healthy):
    r = run_fab(healthy, "check")
    assert r.returncode == 0, r.stdout
    assert "web1: all layers healthy" in r.stdout and "web2: all layers healthy" in r.stdout
    for layer in ("nginx", "site config", "socket", "app server", "Rails app", "assets",
                  "database", "S3", "load balancer"):
        assert layer in r.stdout
    assert "skip" not in r.stdout
    assert "same assets on 2 hosts" in r.stdout  # built once, the same files on both


def test_a_host_serving_other_assets_than_the_fleet_fails_the_assets_layer(healthy, sandbox):
    """A page from web1 asks web2 (behind the ALB) for assets by web1's digests."""
    manifest = "/srv/sample/current/public/assets/.sprockets-manifest-*.json"
    try:
        ssh(sandbox, "web2", f"for f in {manifest}; do cp -p $f /root/rf-manifest && "
                             "printf ' ' >> $f; done")
        code, result = verdicts(healthy)
    finally:
        ssh(sandbox, "web2", f"for f in {manifest}; do cp -p /root/rf-manifest $f; done && "
                             "rm /root/rf-manifest")
    assert code != 0, result
    v = first_broken(result["web2"])
    assert v["layer"] == "assets" and "precompiled on each host separately" in v["detail"], v
    assert "web1 serve" in v["detail"] and v["fix"].startswith("deploy a new release"), v
    assert first_broken(result["web1"]) is None, result["web1"]


@pytest.mark.parametrize("fault", FAULTS)
def test_injected_fault_is_named_with_its_fix(healthy, sandbox, fault):
    f = FAULTS[fault]
    try:
        ssh(sandbox, "web2", f.inject)
        code, result = verdicts(healthy)
    finally:
        ssh(sandbox, "web2", f.undo)
        ssh(sandbox, "web2", SETTLED)
    assert code != 0
    broken = first_broken(result["web2"])
    assert broken is not None, result["web2"]
    assert broken["layer"] == f.layer, broken
    assert broken["role"] == "cause"
    assert f.evidence in broken["detail"], broken
    assert f.fix in broken["fix"], broken
    assert "rf-old-line" not in broken["detail"], broken  # an earlier start's evidence
    assert "www-data" not in broken["fix"], broken  # never a path handed to nginx's user
    assert first_broken(result["web1"]) is None  # the other host is unaffected


def test_every_fault_was_undone(healthy):
    """Each undo is checked by its commands' exit status; once after all of them, the hosts
    are green again (a fault left behind would show here, and in the next fault's test)."""
    r = run_fab(healthy, "check")
    assert r.returncode == 0, r.stdout


def test_an_unregistered_target_is_named_with_its_reason(healthy, inv):
    """moto runs no health checks: it answers healthy, or unused with AWS's reason for a
    target that is not registered, which is what this injects (tests/unit has the reasons
    of failed health checks)."""
    from railsfab import rolling

    tg = rolling.TargetGroup(inv)
    web2 = tg.target(next(h for h in inv.hosts() if h.name == "web2"))
    tg.c.elbv2.deregister_targets(TargetGroupArn=tg.arn, Targets=[web2])
    try:
        code, result = verdicts(healthy)
    finally:
        tg.register([web2])
    assert code != 0
    broken = first_broken(result["web2"])
    assert (broken["layer"], broken["role"]) == ("load balancer", "cause"), broken
    assert f"{web2['Id']} is unused: Target.NotRegistered" in broken["detail"], broken
    assert "fab deploy registers it" in broken["fix"]
    assert first_broken(result["web1"]) is None
    assert verdicts(healthy)[0] == 0, "the target was not registered again"


def test_database_unreachable_is_the_database_layer(healthy, sandbox):
    ssh(sandbox, "db", "systemctl stop mariadb")
    try:
        code, result = verdicts(healthy)
    finally:
        ssh(sandbox, "db", "systemctl start mariadb")
    assert code != 0
    for host in ("web1", "web2"):
        broken = first_broken(result[host])
        assert broken["layer"] == "database", broken
        assert "Connection refused" in broken["detail"], broken
        assert broken["fix"].startswith("nothing listens on "), broken
        assert "start the database server" in broken["fix"], broken


def test_a_database_user_that_may_only_read_is_named_with_the_grant(healthy, sandbox, inv):
    db = inv.stage.app.database
    ssh(sandbox, "db", f"mysql -e \"REVOKE INSERT, UPDATE, DELETE ON \\`{db.name}\\`.* FROM "
                       f"'{db.user}'@'%'\"")
    try:
        code, result = verdicts(healthy)
    finally:
        ssh(sandbox, "db", f"mysql -e \"GRANT ALL PRIVILEGES ON \\`{db.name}\\`.* TO "
                           f"'{db.user}'@'%'\"")
    assert code != 0
    for host in ("web1", "web2"):
        broken = first_broken(result[host])
        assert broken["layer"] == "database", broken
        assert (f"the app's database user {db.user} may not write the app's data" in
                broken["detail"]) and "(the database): INSERT" in broken["detail"], broken
        assert broken["fix"].startswith(f"as an admin: GRANT SELECT, INSERT, UPDATE, DELETE ON "
                                        f"`{db.name}`.* TO '{db.user}'@'%'"), broken
    assert verdicts(healthy)[0] == 0, "the grant was not given back"


def test_a_table_gone_from_the_database_names_its_migration(healthy, sandbox, inv):
    """schema_migrations says the migration ran, the table is not there: the migration that
    creates it, its state, and how to run it again; not "check the DB host is up"."""
    db = inv.stage.app.database.name
    ssh(sandbox, "db", f"mysql -e 'RENAME TABLE `{db}`.photos TO `{db}`.rf_photos_off'")
    try:
        code, result = verdicts(healthy)
    finally:
        ssh(sandbox, "db", f"mysql -e 'RENAME TABLE `{db}`.rf_photos_off TO `{db}`.photos'")
    assert code != 0
    for host in ("web1", "web2"):
        broken = first_broken(result[host])
        assert broken["layer"] == "database", broken
        assert f"Table '{db}.photos' doesn't exist" in broken["detail"], broken
        assert "db/migrate/20261128130013_create_photos.rb creates photos" in broken["detail"]
        assert "recorded as run" in broken["detail"], broken
        assert broken["fix"].startswith(f"fab rails --only {host} -- db:migrate:status"), broken
        assert "db:migrate:up VERSION=20261128130013" in broken["fix"], broken
    assert verdicts(healthy)[0] == 0, "the table was not put back"


def test_an_nginx_site_edited_by_hand_is_a_warning(healthy, sandbox):
    try:
        ssh(sandbox, "web2", f"cp -p {SITE} /root/rf-site && sed -i 's/server_tokens off;/"
                             f"server_tokens off; add_header X-Rf-Edited yes;/' {SITE} && "
                             "systemctl reload nginx")
        code, result = verdicts(healthy)
    finally:
        ssh(sandbox, "web2", f"cp -p /root/rf-site {SITE} && rm /root/rf-site && "
                             "systemctl reload nginx")
    assert code == 0, result
    v = next(x for x in result["web2"] if x["layer"] == "site config")
    assert v["status"] == "warn", v
    assert "add_header X-Rf-Edited yes;" in v["detail"], v
    assert v["fix"].startswith("fab deploy"), v


def test_a_unit_changed_on_disk_and_not_reloaded_is_a_warning(healthy, sandbox):
    """The app works now; the next restart would run another unit: said, never green."""
    unit = f"/etc/systemd/system/{UNIT}.service"
    ssh(sandbox, "web2", f"cp -p {unit} /root/rf-unit && "
                         f"sed -i 's/^TimeoutStartSec=.*/TimeoutStartSec=121/' {unit}")
    try:
        r = run_fab(healthy, "check")
        code, result = verdicts(healthy)
    finally:
        ssh(sandbox, "web2", f"cp -p /root/rf-unit {unit} && rm /root/rf-unit && "
                             "systemctl daemon-reload")
    assert r.returncode == 0 and code == 0, r.stdout  # a warning fails nothing
    v = next(x for x in result["web2"] if x["layer"] == "app server")
    assert v["status"] == "warn", v
    assert f"{unit} changed on disk after systemd read it" in v["detail"], v
    assert "(the host has: 'TimeoutStartSec=121')" in v["detail"], v
    assert v["fix"].startswith("fab deploy"), v
    assert "web2: every layer works, with warnings" in r.stdout, r.stdout
    assert "web1: all layers healthy" in r.stdout


def test_spec_runs_with_plain_pytest_and_testinfra(healthy, sandbox, inv):
    """tests/host is a testinfra spec usable without fab: pytest --hosts=..."""
    r = run_host_spec(healthy, sandbox.ssh_config, ["web1", "web2"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert " passed" in r.stdout and "failed" not in r.stdout
