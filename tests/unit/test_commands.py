"""Command builders: exact strings, RAILS_ENV always explicit, secrets never shown."""

from __future__ import annotations

import subprocess

from railsfab import commands
from railsfab.commands import Cmd
from railsfab.paths import Paths
from railsfab.secrets import env_file_text

PATHS = Paths("shop", "/srv/shop")


def test_rails_task_runs_as_deploy_user_with_explicit_env():
    cmd = commands.rails(PATHS, "/srv/shop/releases/1", "deploy", "production",
                         "assets:precompile")
    assert str(cmd) == (
        "umask 0007 && cd /srv/shop/releases/1 && set -a && . /etc/railsfab/shop.env && "
        "set +a && exec runuser -u deploy -- env RAILS_ENV=production RACK_ENV=production "
        "BUNDLE_GEMFILE=/srv/shop/releases/1/Gemfile.railsfab GEM_HOME=/srv/shop/shared/gems "
        "bin/rails assets:precompile"
    )


def test_rails_env_is_the_stages_not_a_default():
    cmd = commands.rails(PATHS, "/r", "deploy", "staging", "db:migrate")
    assert "RAILS_ENV=staging" in str(cmd) and "production" not in str(cmd)


def test_secrets_in_env_are_masked_when_printed():
    cmd = Cmd(argv=("true",), env={"SECRET_KEY_BASE": "abc123", "DATABASE_PASSWORD": "pw",
                                   "RAILS_ENV": "production"})
    shown = str(cmd)
    assert "abc123" not in shown and "pw " not in shown
    assert "SECRET_KEY_BASE=***" in shown and "DATABASE_PASSWORD=***" in shown
    assert "RAILS_ENV=production" in shown
    assert "SECRET_KEY_BASE=abc123" in cmd.script()  # what actually runs


def test_arguments_are_quoted():
    assert str(Cmd(argv=("echo", "a b", "$HOME"))) == "echo 'a b' '$HOME'"


def test_switch_is_atomic_rename():
    assert commands.switch_current(PATHS, "20261128") == (
        "ln -sfn /srv/shop/releases/20261128 /srv/shop/current.new && "
        "mv -T /srv/shop/current.new /srv/shop/current"
    )


def test_apt_install_is_noninteractive():
    assert str(commands.apt_install(["nginx", "ruby"])) == (
        "env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
        "nginx ruby"
    )


def test_env_file_quotes_values_for_systemd_and_sh():
    text = env_file_text({"RAILS_ENV": "production", "SECRET_KEY_BASE": "a$b"})
    assert "RAILS_ENV='production'\n" in text
    assert "SECRET_KEY_BASE='a$b'\n" in text


def test_production_stage_writes_no_aws_keys(tmp_path, monkeypatch):
    """On EC2 the instance role supplies S3 credentials: no key reaches the host."""
    from pathlib import Path

    from railsfab import inventory
    from railsfab.ops import desired

    root = Path(__file__).resolve().parents[2]
    (tmp_path / "hosts.yaml").write_text(f"""
default_stage: production
stages:
  production:
    hosts: [{{name: web1, address: 198.51.100.7}}]
    app: {{name: shop, source: {root / 'examples/sample_app'}, deploy_to: /srv/shop}}
    aws: {{region: ap-northeast-1, bucket: shop-uploads, stack_name: shop}}
""")
    monkeypatch.setenv("SECRET_KEY_BASE", "x" * 64)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIADEVELOPERKEY")
    env = desired.build(inventory.load(tmp_path / "hosts.yaml")).env_text
    assert "S3_BUCKET='shop-uploads'" in env and "ACTIVE_STORAGE_SERVICE='amazon'" in env
    assert "AWS_ACCESS_KEY_ID" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert "AWS_ENDPOINT_URL" not in env


def test_switch_current_is_made_by_the_deploy_user_not_root():
    assert commands.switch_current(PATHS, "20261128", owner="deploy") == (
        "runuser -u deploy -- sh -c 'ln -sfn /srv/shop/releases/20261128 "
        "/srv/shop/current.new && mv -T /srv/shop/current.new /srv/shop/current'"
    )


def _run_apt_script(tmp_path, behaviour: str) -> subprocess.CompletedProcess:
    """The install script with a fake apt-get first on PATH (behaviour: its shell body)."""
    fake = tmp_path / "apt-get"
    fake.write_text(f"#!/bin/sh\n{behaviour}\n")
    fake.chmod(0o755)
    script = commands.apt_install_script(["nginx"], update=False)
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30,
                          env={"PATH": f"{tmp_path}:/usr/bin:/bin"})


def test_apt_output_streams_and_success_exits_zero(tmp_path):
    r = _run_apt_script(tmp_path, 'echo "Get:1 http://deb.debian.org nginx"; exit 0')
    assert r.returncode == 0 and "Get:1 http://deb.debian.org nginx" in r.stdout


def test_apt_waits_for_the_lock_then_installs(tmp_path):
    marker = tmp_path / "tried"
    r = _run_apt_script(tmp_path, f'if [ ! -e {marker} ]; then touch {marker}; '
                        'echo "E: Could not get lock /var/lib/dpkg/lock-frontend"; exit 100; fi; '
                        'echo installed')
    assert r.returncode == 0 and "installed" in r.stdout


def test_apt_failure_ends_with_its_last_lines_on_stderr(tmp_path):
    r = _run_apt_script(tmp_path, 'echo "E: Unable to locate package nginxx"; exit 100')
    assert r.returncode == 1 and "Unable to locate package nginxx" in r.stderr


def test_a_secrets_file_others_can_read_is_refused_with_the_chmod(tmp_path):
    import pytest

    from railsfab.errors import ConfigError
    from railsfab.secrets import read_env_file, write_env_file

    f = tmp_path / "secrets.env"
    write_env_file(f, {"SECRET_KEY_BASE": "x" * 64})
    assert oct(f.stat().st_mode & 0o777) == "0o600"
    assert read_env_file(f)["SECRET_KEY_BASE"] == "x" * 64
    f.chmod(0o644)
    with pytest.raises(ConfigError) as refused:
        read_env_file(f)
    assert "mode 0644" in str(refused.value) and refused.value.fix == f"chmod 600 {f}"
    f.chmod(0o600)
    (tmp_path / "secrets.env.tmp").write_text("a leftover, world-readable")  # never reused
    write_env_file(f, {"SECRET_KEY_BASE": "y" * 64})
    assert oct(f.stat().st_mode & 0o777) == "0o600"
