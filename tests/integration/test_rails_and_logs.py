"""`fab rails`, `fab logs` and what ships from an app folder, on the sample app (unicorn, no
ALB): a Rails command on the chosen host, every host's logs, secrets never on a host, and a
health path the app does not have named as such."""

from __future__ import annotations

import re

import pytest

from tests.conftest import run_fab
from tests.integration.test_deploy import ssh


@pytest.fixture(scope="module")
def stage(stages):
    return stages.unicorn()


def test_rails_runner_prints_the_stages_env_on_the_migrate_host_by_default(stage):
    r = run_fab(stage, "rails", "--", "runner", "puts Rails.env; puts `hostname`")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == ["production", "web1"]  # one host: no prefix


def test_rails_runs_on_the_host_asked_for_or_on_all(stage):
    r = run_fab(stage, "rails", "--only", "web2", "--", "runner", "print `hostname`")
    assert r.returncode == 0 and r.stdout.strip() == "web2", r.stdout + r.stderr
    r = run_fab(stage, "rails", "--all", "--", "runner", "puts Rails.env")
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(r.stdout.splitlines()) == ["web1 | production", "web2 | production"]


def test_a_failing_rails_command_fails_the_task_with_its_exit_status(stage):
    r = run_fab(stage, "rails", "--", "runner", "exit 3")
    assert r.returncode != 0
    assert "exited 3 on web1" in r.stdout


def test_logs_show_lines_from_every_web_host(stage):
    assert run_fab(stage, "rails", "--all", "--", "runner", "Rails.logger.info('hello logs')"
                   ).returncode == 0
    r = run_fab(stage, "logs", "--lines", "50")
    assert r.returncode == 0, r.stdout + r.stderr
    for host in ("web1", "web2"):
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith(f"{host} | ")]
        assert any("production.log" in ln for ln in lines), host
        assert any("unicorn.stderr.log" in ln for ln in lines), host
        assert any("/var/log/nginx/sample.access.log" in ln for ln in lines), host


def test_secrets_in_the_app_folder_never_reach_a_host(stage, inv, sandbox):
    app = inv.resolve(inv.stage.app.source)
    planted = {".env": "SECRET_KEY_BASE=leaked\n", "config/master.key": "0123456789abcdef\n",
               "config/credentials/production.key": "fedcba\n"}
    try:
        for rel, text in planted.items():
            (app / rel).parent.mkdir(parents=True, exist_ok=True)
            (app / rel).write_text(text)
        r = run_fab(stage, "deploy")
    finally:
        for rel in planted:
            (app / rel).unlink()
    assert r.returncode == 0, r.stdout + r.stderr
    said = re.search(r"left out \(secrets never ship\): (.*)", r.stdout).group(1)
    assert sorted(said.split(", ")) == sorted(planted)
    for host in ("web1", "web2"):
        found = ssh(sandbox, host, "sudo find /srv/sample -name .env -o -name '*.key' "
                                   "-o -name master.key")
        assert found == "", host


def test_a_health_path_the_app_does_not_have_is_named_with_its_fix(stages, sandbox):
    path = stages.variant("hosts-healthz.yaml", lambda st: (
        st["aws"].pop("stack_name"), st["app"].update(health_path="/healthz")))
    r = run_fab(path, "check", "--only", "web1")
    assert r.returncode != 0
    assert "/healthz answers 404: the app has no such route" in r.stdout
    assert "rails/health#show" in r.stdout
