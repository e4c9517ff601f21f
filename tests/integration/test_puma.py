"""Puma on the sandbox: the switch from unicorn and back under load (with and without the
sd_notify gem, i.e. a Type=notify and a Type=simple unit), restarts (phased and hot) that
lose no request, a release that cannot boot, and puma alone on :3000.

Starts from unicorn (without the ALB) on the pristine sample app; the tests build on each
other in order.
"""

from __future__ import annotations

import re
import urllib.request

import pytest

from tests.conftest import run_fab, run_host_spec
from tests.integration.test_deploy import current_release, get, ssh
from tests.integration.test_security import exposure
from tests.integration.test_zero_downtime import edit_view, under_load

WEB = ("web1", "web2")


@pytest.fixture(scope="module")
def unicorn_stage(stages):
    """The unicorn stage this file starts from and switches back to."""
    return stages.unicorn()


@pytest.fixture(scope="module")
def puma_stage(stages, unicorn_stage):
    return stages.puma_file()


@pytest.fixture(scope="module")
def app(inv):
    return inv.resolve(inv.stage.app.source)


@pytest.fixture(scope="module")
def addresses(inv):
    return [h.address for h in inv.hosts(role="web")]


def puma_master(sandbox, host: str) -> str:
    return ssh(sandbox, host, "systemctl show -p MainPID --value sample-puma")


def processes(sandbox, host: str, pattern: str) -> list[str]:
    return ssh(sandbox, host, f"pgrep -u sample -f '{pattern}' || true").split()


def test_switch_from_unicorn_to_puma_under_load_loses_nothing(sandbox, puma_stage, addresses):
    assert all(processes(sandbox, h, "^unicorn master") for h in WEB)
    r, load = under_load(addresses, lambda: run_fab(puma_stage, "deploy"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert load.result.failed == 0, load.result.errors
    assert "retire unicorn" in r.stdout and "no gap: Puma answered" in r.stdout
    for h in WEB:
        assert processes(sandbox, h, "^unicorn") == []  # no orphan
        assert ssh(sandbox, h, "systemctl is-active sample-puma") == "active"
        gone = ssh(sandbox, h, "ls /etc/systemd/system/sample-unicorn.service "
                               "/srv/sample/shared/config/unicorn.rb 2>/dev/null || true")
        assert gone == ""
        site = ssh(sandbox, h, "cat /etc/nginx/sites-available/sample")
        assert "server unix:/srv/sample/shared/tmp/sockets/puma.sock" in site
        assert ssh(sandbox, h, "systemctl show -p Type --value sample-puma") == "notify"
        assert exposure(sandbox, h, "sample-puma") <= 2.0  # sandboxed like unicorn


def test_puma_deploy_is_idempotent_and_check_is_green(puma_stage):
    again = run_fab(puma_stage, "deploy")
    assert again.returncode == 0 and "0 changed" in again.stdout, again.stdout
    check = run_fab(puma_stage, "check")
    assert check.returncode == 0, check.stdout
    assert "puma.sock listening" in check.stdout


def test_host_spec_holds_for_puma_behind_nginx(sandbox, puma_stage):
    r = run_host_spec(puma_stage, sandbox.ssh_config, list(WEB))
    assert r.returncode == 0, r.stdout + r.stderr
    assert " passed" in r.stdout and "skipped" not in r.stdout


@pytest.mark.parametrize("flags,mode", [((), "phased"), (("--hot",), "hot")])
def test_restart_app_under_load_loses_nothing(sandbox, puma_stage, addresses, flags, mode):
    masters = {h: puma_master(sandbox, h) for h in WEB}
    workers = {h: processes(sandbox, h, "^puma: cluster worker") for h in WEB}
    r, load = under_load(addresses, lambda: run_fab(puma_stage, "restart-app", *flags))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{mode} restart of master" in r.stdout
    assert load.result.failed == 0, load.result.errors
    for h in WEB:
        assert puma_master(sandbox, h) == masters[h]  # systemd still tracks the same master
        new = processes(sandbox, h, "^puma: cluster worker")
        assert len(new) == 2 and not set(new) & set(workers[h])
        assert ssh(sandbox, h, "systemctl show -p NRestarts --value sample-puma") == "0"


def test_restart_unicorn_refuses_a_puma_stage(puma_stage):
    r = run_fab(puma_stage, "restart-unicorn")
    assert r.returncode != 0
    assert "runs puma, not unicorn" in r.stdout and "fab restart-app" in r.stdout


def test_deploy_of_a_changed_release_is_a_phased_restart(sandbox, app, puma_stage, addresses):
    edit_view(app, "puma phased")
    r, load = under_load(addresses, lambda: run_fab(puma_stage, "deploy"), marker="puma phased")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "phased restart of master" in r.stdout
    assert load.result.failed == 0, load.result.errors
    for address in addresses:
        assert "puma phased" in get(address, "/")[2]


def test_release_that_raises_at_boot_is_reverted(sandbox, app, puma_stage, addresses):
    before = {h: current_release(sandbox, h) for h in WEB}
    edit_view(app, "puma never served")
    boom = app / "config/initializers/zz_boom.rb"
    boom.write_text('raise "boom at boot" if $PROGRAM_NAME.include?("puma")\n')
    try:
        r, load = under_load(addresses, lambda: run_fab(puma_stage, "deploy"))
    finally:
        boom.unlink()
        edit_view(app, "puma phased")
    assert r.returncode != 0
    # puma 5 logs the failing line, not the exception's message
    assert "cannot load the app" in r.stdout and "zz_boom.rb:1" in r.stdout
    assert load.result.failed == 0, load.result.errors
    assert {h: current_release(sandbox, h) for h in WEB} == before
    for address in addresses:
        assert "puma phased" in get(address, "/")[2]
    # the host whose restart failed is back on its release and back behind the ALB
    if " deregister " in r.stdout:  # test_aws provisioned the stack
        assert "back in the target group" in r.stdout
    check = run_fab(puma_stage, "check")
    assert check.returncode == 0, check.stdout


def test_puma_alone_answers_on_port_3000(sandbox, stages, inv):
    """The seed's first step: one host, puma on :3000, no nginx in front."""

    def alone(st):
        st["hosts"] = [h for h in st["hosts"] if h["name"] != "web1"]
        st["app"].update(app_server="puma", nginx=False, port=3000)
        st["aws"].pop("stack_name")  # not behind the ALB (its target group checks :80)

    web2 = next(h.address for h in inv.hosts() if h.name == "web2")
    path = stages.variant("hosts-alone.yaml", alone)
    r = run_fab(path, "deploy")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "removed /etc/nginx/sites-enabled/sample" in r.stdout
    status, _, body = get(f"{web2}:3000", "/")
    assert status == 200 and "puma phased" in body
    asset = ssh(sandbox, "web2", "cd /srv/sample/current/public && ls assets/*.css | head -1")
    assert get(f"{web2}:3000", f"/{asset}")[0] == 200  # puma serves public/ itself
    try:  # nothing of the app is left on :80
        assert urllib.request.urlopen(f"http://{web2}/up", timeout=5).status != 200
    except OSError:
        pass
    check = run_fab(path, "check")
    assert check.returncode == 0, check.stdout
    assert "no nginx in this stage" in check.stdout
    assert "0 changed" in run_fab(path, "deploy").stdout
    spec = run_host_spec(path, sandbox.ssh_config, ["web2"])
    assert spec.returncode == 0, spec.stdout + spec.stderr
    assert " passed" in spec.stdout and "skipped" not in spec.stdout


def test_switch_back_to_unicorn_under_load_loses_nothing(sandbox, puma_stage, unicorn_stage,
                                                          addresses):
    assert run_fab(puma_stage, "deploy").returncode == 0  # web2 behind nginx again
    r, load = under_load(addresses, lambda: run_fab(unicorn_stage, "deploy"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert load.result.failed == 0, load.result.errors
    assert "retire puma" in r.stdout
    for h in WEB:
        assert processes(sandbox, h, "^puma") == []
        assert ssh(sandbox, h, "systemctl is-active sample-unicorn") == "active"
        assert "sample-puma" not in ssh(sandbox, h, "ls /etc/systemd/system")
    assert run_fab(unicorn_stage, "check").returncode == 0


def test_switch_to_puma_without_sd_notify_waits_until_it_answers(sandbox, app, unicorn_stage,
                                                                puma_stage, addresses):
    """Without the sd_notify gem puma's unit is Type=simple: systemd calls it started before
    it listens. nginx may only move to puma.sock once puma answers there."""
    gemfile = app / "Gemfile"
    original = gemfile.read_text()
    gemfile.write_text(re.sub(r'^gem "sd_notify".*\n', "", original, flags=re.M))
    try:
        r, load = under_load(addresses, lambda: run_fab(puma_stage, "deploy"))
        assert r.returncode == 0, r.stdout + r.stderr
        assert load.result.failed == 0, load.result.errors
        assert "no gap: Puma answered" in r.stdout
        for h in WEB:
            assert ssh(sandbox, h, "systemctl show -p Type --value sample-puma") == "simple"
        back, load = under_load(addresses, lambda: run_fab(unicorn_stage, "deploy"))
        assert back.returncode == 0, back.stdout + back.stderr
        assert load.result.failed == 0, load.result.errors
    finally:
        gemfile.write_text(original)
    assert run_fab(unicorn_stage, "deploy").returncode == 0
