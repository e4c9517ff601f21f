"""Hosts deployed before app.app_user (the app ran as the deploy user, which owned shared/)
move to the app's own user on the next `fab deploy`, under ALB-routed load, with not one
failed request: the user is made, shared/ and what the deploy user wrote there handed over,
the unit changed (a full restart, each host drained from the target group first)."""

from __future__ import annotations

import shlex

import pytest

from tests.conftest import run_fab
from tests.integration.matrix import WEB, all_healthy, under_alb_load
from tests.integration.test_deploy import get, ssh

SHARED = "/srv/sample/shared"


@pytest.fixture(scope="module", params=["unicorn", "puma"])
def server_stage(request, stages):
    path = stages.unicorn(alb=True) if request.param == "unicorn" else stages.puma(alb=True)
    return request.param, path


def as_before_app_user(sandbox, inv, server: str) -> None:
    """Each web host as railsfab left it before app.app_user: the unit runs the app as the
    deploy user, which owns shared/log, tmp and storage and what is in them; no app user."""
    unit = f"/etc/systemd/system/sample-{server}.service"
    script = (
        f"sed -i -e 's/^User=.*/User=deploy/' -e 's/^Group=.*/Group=deploy/' "
        f"-e '/^SupplementaryGroups=/d' -e 's/^UMask=.*/UMask=0027/' "
        f"-e 's|^ReadWritePaths=.*|ReadWritePaths=/srv/sample|' {unit} && "
        f"systemctl stop sample-{server} && rm -rf {SHARED}/tmp/cache && "
        f"mkdir -p {SHARED}/storage/ab/cd && echo blob > {SHARED}/storage/ab/cd/old-upload && "
        f"chown -R deploy:deploy {SHARED}/log {SHARED}/tmp {SHARED}/storage && "
        f"find {SHARED}/log {SHARED}/storage -type d -exec chmod 0750 {{}} + && "
        f"find {SHARED}/log {SHARED}/storage -type f -exec chmod 0640 {{}} + && "
        # the modes railsfab gave them then (nginx passes through tmp to the socket)
        f"chmod 0711 {SHARED}/tmp && chmod 0750 {SHARED}/tmp/pids && "
        f"chgrp www-data {SHARED}/tmp/sockets && chmod 2750 {SHARED}/tmp/sockets && "
        f"userdel sample && systemctl daemon-reload && systemctl start sample-{server}")
    for h in WEB:
        ssh(sandbox, h, f"sudo sh -c {shlex.quote(script)}")
        assert ssh(sandbox, h, f"ps -o user= -p $(systemctl show -p MainPID --value "
                               f"sample-{server})") == "deploy"
    for h in inv.hosts(role="web"):  # and it serves, as it did
        assert get(h.address, "/")[0] == 200


def test_a_host_where_the_app_ran_as_the_deploy_user_moves_to_the_apps_own_user(
        server_stage, sandbox, inv):
    server, stage = server_stage
    assert run_fab(stage, "deploy").returncode == 0
    as_before_app_user(sandbox, inv, server)
    # a restart keeps the unit as it is: it says to deploy first, and changes nothing
    refused = run_fab(stage, "restart-app")
    said = " ".join((refused.stdout + refused.stderr).split())
    assert refused.returncode == 1, said
    assert f"sample-{server}.service runs the app as deploy, not sample" in said, said
    assert "`fab deploy` moves it to its own user" in said, said
    r, load = under_alb_load(inv, lambda: run_fab(stage, "deploy"))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert load.result.failed == 0, (load.result.errors, out)
    assert "created sample" in out and "full restart" in out, out
    for h in WEB:
        pid = ssh(sandbox, h, f"systemctl show -p MainPID --value sample-{server}")
        assert ssh(sandbox, h, f"ps -o user= -p {pid}") == "sample"
        assert ssh(sandbox, h, f"sudo stat -c '%U %G %a' {SHARED}/log {SHARED}/storage/ab/cd "
                               f"{SHARED}/storage/ab/cd/old-upload").splitlines() == [
            "sample deploy 2770", "sample deploy 2770", "sample deploy 660"]
        # the app writes where an upload went before, as it would add one
        assert ssh(sandbox, h, f"sudo nsenter -t {pid} -m setpriv --reuid=sample "
                               f"--regid=sample --init-groups sh -c 'echo new > "
                               f"{SHARED}/storage/ab/cd/new-upload && echo ok'") == "ok"
    assert all_healthy(inv)
    again = run_fab(stage, "deploy")
    assert again.returncode == 0 and "0 changed" in again.stdout, again.stdout
