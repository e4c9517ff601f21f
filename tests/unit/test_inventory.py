"""hosts.yaml loading: stage choice, path resolution, and one clear line per mistake."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from railsfab import inventory
from railsfab.errors import ConfigError
from tests.conftest import run_fab

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
default_stage: staging
stages:
  staging:
    ssh: {user: admin, key: keys/staging.pem}
    hosts:
      - {name: web1, address: 192.0.2.11, roles: [web, migrate]}
      - {name: web2, address: 192.0.2.12, user: ubuntu, port: 2222}
    app:
      name: shop
      source: ../shop
      deploy_to: /srv/shop
      workers: 3
      database: {host: db.internal, name: shop_production, user: shop}
    aws: {region: ap-northeast-1}
  production:
    hosts:
      - {name: web1, address: ec2-198-51-100-1.compute.amazonaws.com}
    app: {name: shop, source: ../shop, deploy_to: /srv/shop}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "hosts.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def error_of(tmp_path: Path, text: str) -> str:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        inventory.load(p)
    assert exc.value.exit_code == 2
    return exc.value.message.replace(str(p), "hosts.yaml")


def test_default_stage_and_resolved_paths(tmp_path, monkeypatch):
    monkeypatch.delenv("RAILSFAB_STAGE", raising=False)
    inv = inventory.load(write(tmp_path, GOOD))
    assert inv.stage_name == "staging"
    web1, web2 = inv.hosts()
    assert inv.ssh_key(web1) == tmp_path / "keys/staging.pem"
    assert (inv.ssh_user(web1), inv.ssh_port(web1)) == ("admin", 22)
    assert (inv.ssh_user(web2), inv.ssh_port(web2)) == ("ubuntu", 2222)
    assert inv.known_hosts == tmp_path / ".railsfab/known_hosts"
    assert inv.stage.app.rails_env == "production"
    assert [h.name for h in inv.hosts(role="migrate")] == ["web1"]


def test_stage_from_argument_beats_environment(tmp_path, monkeypatch):
    p = write(tmp_path, GOOD)
    monkeypatch.setenv("RAILSFAB_STAGE", "production")
    assert inventory.load(p).stage_name == "production"
    assert inventory.load(p, stage="staging").stage_name == "staging"


def test_unknown_stage_suggests_nearest(tmp_path):
    p = write(tmp_path, GOOD)
    with pytest.raises(ConfigError) as exc:
        inventory.load(p, stage="prodution")
    assert "no stage 'prodution' (did you mean 'production'?)" in exc.value.message


def test_unknown_key_names_path_and_nearest_key(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("address: 192.0.2.12", "adress: 192.0.2.12"))
    assert msg.startswith("hosts.yaml: stages.staging.hosts.1.adress: unknown key "
                          "(did you mean 'address'?)")


def test_unknown_key_in_nested_block(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("workers: 3", "worker: 3"))
    assert msg == "hosts.yaml: stages.staging.app.worker: unknown key (did you mean 'workers'?)"


def test_unknown_top_level_key(tmp_path):
    msg = error_of(tmp_path, "defualt_stage: x\n" + GOOD)
    assert msg == "hosts.yaml: defualt_stage: unknown key (did you mean 'default_stage'?)"


def test_wrong_type_names_expected_type(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("workers: 3", "workers: three"))
    assert msg == "hosts.yaml: stages.staging.app.workers: expected an integer, got 'three'"


def test_wrong_type_list(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("roles: [web, migrate]", "roles: web"))
    assert msg == "hosts.yaml: stages.staging.hosts.0.roles: expected a list, got 'web'"


def test_missing_required_key(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("      deploy_to: /srv/shop\n      workers",
                                          "      workers"))
    assert msg == "hosts.yaml: stages.staging.app.deploy_to: required key is missing"


def test_bad_role_lists_allowed_values(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("roles: [web, migrate]", "roles: [web, migrat]"))
    assert msg == ("hosts.yaml: stages.staging.hosts.0.roles.1: expected one of "
                   "'web', 'db' or 'migrate', got 'migrat'")


def test_relative_deploy_to_rejected(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("deploy_to: /srv/shop\n      workers",
                                          "deploy_to: srv/shop\n      workers"))
    assert msg == ("hosts.yaml: stages.staging.app.deploy_to: 'srv/shop' is not an absolute "
                   "path of letters, digits, '.', '_', '-' and '/'")


def test_two_migrate_hosts_rejected(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("user: ubuntu, port: 2222",
                                          "user: ubuntu, port: 2222, roles: [web, migrate]"))
    assert msg == ("hosts.yaml: stages.staging: exactly one host may have role 'migrate', "
                   "found web1, web2")


def test_bad_yaml_names_line_and_column(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("    aws: {region: ap-northeast-1}",
                                          "    aws: {region: ap-northeast-1"))
    assert msg == ("hosts.yaml:15:13: invalid YAML: expected ',' or '}', but got ':' "
                   "(while parsing a flow mapping started at line 14)")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as exc:
        inventory.load(tmp_path / "nope.yaml")
    assert exc.value.message.endswith("nope.yaml: file not found")


def test_sandbox_hosts_must_be_inside_subnet(tmp_path):
    text = GOOD.replace("    aws: {region: ap-northeast-1}",
                        "    sandbox: {bridge: rftest0, subnet: 10.240.0.0/16, "
                        "gateway: 10.240.0.1}")
    msg = error_of(tmp_path, text)
    assert msg == ("hosts.yaml: stages.staging: sandbox host web1 address 192.0.2.11 must be "
                   "an IP inside 10.240.0.0/16")


def test_shipped_hosts_yaml_is_valid():
    inv = inventory.load(ROOT / "hosts.yaml")
    assert inv.stage_name == "sandbox"
    assert {h.name for h in inv.hosts()} == {"web1", "web2", "db"}
    assert inv.stage.sandbox is not None


def test_fab_prints_one_line_and_exits_2(tmp_path):
    """The CLI boundary: a broken hosts.yaml gives one message line, exit 2, no traceback."""
    bad = write(tmp_path, GOOD.replace("workers: 3", "workers: three"))
    proc = run_fab(bad, "sandbox.status", cwd=tmp_path, bare=True)
    assert proc.returncode == 2
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out
    assert "stages.staging.app.workers: expected an integer, got 'three'" in out
    assert "sandbox.status failed" in out


def test_nginx_false_needs_puma(tmp_path):
    msg = error_of(tmp_path, GOOD.replace("workers: 3", "workers: 3\n      nginx: false"))
    assert msg.startswith("hosts.yaml: stages.staging.app: nginx: false needs app_server: puma")
    ok = write(tmp_path, GOOD.replace("workers: 3", "workers: 3\n      nginx: false\n"
                                                     "      app_server: puma"))
    app = inventory.load(ok, "staging").stage.app
    assert (app.nginx, app.port, app.app_server) == (False, 3000, "puma")
