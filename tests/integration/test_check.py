"""`fab check` on real hosts: all green when healthy; each injected fault named by its layer.

Faults are injected on web2 only, one at a time, and undone before the next; web1 stays
healthy throughout, so each run also proves the diagnosis is per host.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import run_fab, run_host_spec

SITE = "/etc/nginx/sites-available/sample"
SOCKDIR = "/srv/sample/shared/tmp/sockets"
ENV = "/etc/railsfab/sample.env"
UNIT = "sample-unicorn"
PID = "/srv/sample/shared/tmp/pids/unicorn.pid"

# name: (inject on web2, undo on web2, expected layer, evidence in the detail)
FAULTS = {
    "unicorn stopped": (
        f"systemctl stop {UNIT}", f"systemctl start {UNIT}", "app server", "502"),
    "nginx stopped": (
        "systemctl stop nginx", "systemctl start nginx", "nginx", "connection refused"),
    "default site shadows the app": (
        f"sed -i 's/listen 80 default_server;/listen 80;/' {SITE} && "
        "ln -s /etc/nginx/sites-available/default /etc/nginx/sites-enabled/default && "
        "systemctl reload nginx",
        f"rm /etc/nginx/sites-enabled/default && sed -i 's/listen 80;/listen 80 default_server;/'"
        f" {SITE} && systemctl reload nginx",
        "site config", "default site"),
    "assets not precompiled": (
        "mv /srv/sample/current/public/assets /srv/sample/assets.off",
        "mv /srv/sample/assets.off /srv/sample/current/public/assets",
        "assets", "no precompiled assets"),
    "unicorn in the wrong RAILS_ENV": (
        f"sed -i \"s/^RAILS_ENV=.*/RAILS_ENV='development'/\" {ENV} && systemctl restart {UNIT}",
        f"sed -i \"s/^RAILS_ENV=.*/RAILS_ENV='production'/\" {ENV} && systemctl restart {UNIT}",
        "app server", "RAILS_ENV=development"),
    "nginx and unicorn on different sockets": (
        f"sed -i 's|server unix:{SOCKDIR}/unicorn.sock|server unix:{SOCKDIR}/other.sock|' {SITE}"
        " && systemctl reload nginx",
        f"sed -i 's|server unix:{SOCKDIR}/other.sock|server unix:{SOCKDIR}/unicorn.sock|' {SITE}"
        " && systemctl reload nginx",
        "socket", "other.sock"),
    "nginx denied the socket": (
        f"chmod 2700 {SOCKDIR}", f"chmod 2750 {SOCKDIR}", "socket", "may not connect"),
    "stale pid file": (
        f"systemctl stop {UNIT} && echo 999999 > {PID} && chown deploy: {PID}",
        f"rm -f {PID} && systemctl start {UNIT}", "app server", "stale pid file"),
    "Rails host authorization blocks the ALB": (
        f"echo \"RAILS_ALLOWED_HOSTS='example.com'\" >> {ENV} && systemctl restart {UNIT}",
        f"sed -i '/^RAILS_ALLOWED_HOSTS=/d' {ENV} && systemctl restart {UNIT}",
        "Rails app", "Blocked host"),
}


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
    return next((v for v in vs if v["status"] == "FAIL"), None)


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


@pytest.mark.parametrize("fault", FAULTS)
def test_injected_fault_is_named_with_its_fix(healthy, sandbox, fault):
    inject, undo, layer, evidence = FAULTS[fault]
    ssh(sandbox, "web2", inject)
    try:
        code, result = verdicts(healthy)
    finally:
        ssh(sandbox, "web2", undo)
    assert code != 0
    broken = first_broken(result["web2"])
    assert broken is not None, result["web2"]
    assert broken["layer"] == layer, broken
    assert evidence in broken["detail"], broken
    assert broken["fix"]
    assert first_broken(result["web1"]) is None  # the other host is unaffected
    assert verdicts(healthy)[0] == 0, "the fault was not undone"


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


def test_spec_runs_with_plain_pytest_and_testinfra(healthy, sandbox, inv):
    """tests/host is a testinfra spec usable without fab: pytest --hosts=..."""
    r = run_host_spec(healthy, sandbox.ssh_config, ["web1", "web2"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert " passed" in r.stdout and "failed" not in r.stdout
