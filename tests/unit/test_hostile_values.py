"""hosts.yaml values that would reach a root shell, a unit file, nginx, Ruby or apt as code:
each is refused when the file is loaded, before any SSH, with one line naming the key."""

from __future__ import annotations

import copy

import pytest
import yaml

from railsfab import inventory
from railsfab.errors import ConfigError

GOOD = {"default_stage": "prod", "stages": {"prod": {
    "ssh": {"user": "admin"},
    "hosts": [{"name": "web1", "address": "10.0.0.11", "roles": ["web", "migrate"]}],
    "app": {"name": "shop", "source": "app", "deploy_to": "/srv/shop",
            "database": {"host": "db.internal", "name": "shop", "user": "shop"}},
    "aws": {"region": "ap-northeast-1", "bucket": "shop-up", "stack_name": "shop"},
    "apt_proxy": "http://10.0.0.1:8888"}}}

HOSTILE = [
    ("app.deploy_user", "deploy; touch /tmp/PWNED"),
    ("app.deploy_user", "root"),
    ("app.deploy_user", "admin"),  # the SSH user: sudo for the app
    ("app.deploy_user", "-oProxyCommand"),
    ("app.deploy_to", "/srv/x$(touch /tmp/PWNED)"),
    ("app.deploy_to", "/srv/x#{`id`}"),
    ("app.deploy_to", "/etc"),
    ("app.deploy_to", "/srv/../etc"),
    ("app.deploy_to", "/"),
    ("app.deploy_to", "/var"),
    ("app.deploy_to", "/usr/local/app"),
    ("app.deploy_to", "/srv/my app"),
    ("app.deploy_to", "/srv/app\nExecStartPre=/bin/sh"),
    ("app.rails_env", 'production"; system("id"); "'),
    ("app.rails_env", "production\nUser=root"),
    ("app.client_max_body_size", "25m; location /etc/ { alias /etc/; autoindex on; } #"),
    ("app.packages", ["-oDPkg::Pre-Invoke::=touch /tmp/PWNED"]),
    ("app.packages", ["nginx; rm -rf /"]),
    ("app.health_path", "/up' -o /etc/passwd '"),
    ("app.ref", "--upload-pack=touch /tmp/PWNED"),
    ("app.database.name", "shop'; DROP DATABASE x; --"),
    ("app.database.user", "shop$(id)"),
    ("app.database.host", "db -oProxyCommand=x"),
    ("app.gem_source_mirror", "http://mirror' ; touch /tmp/PWNED"),
    ("app.bundle_without", "test\nBUNDLE_PATH: /etc"),
    ("aws.bucket", "b\u0435d"),  # a Cyrillic 'е'
    ("aws.region", "eu-west-1; id"),
    ("aws.stack_name", "shop --template-url x"),
    ("apt_proxy", 'http://p:8888"; Acquire::http::Proxy "x'),
    ("ssh.user", "admin -i /etc/shadow"),
    ("hosts.0.address", "10.0.0.11 ; id"),
    ("hosts.0.instance_id", "i-123$(id)"),
]


def with_value(path: str, value) -> dict:
    doc = copy.deepcopy(GOOD)
    node = doc["stages"]["prod"]
    *parents, last = path.split(".")
    for p in parents:
        node = node[int(p)] if p.isdigit() else node[p]
    node[last] = value
    return doc


@pytest.mark.parametrize("path,value", HOSTILE, ids=[f"{p}={v!r}"[:60] for p, v in HOSTILE])
def test_a_hostile_value_is_refused_at_load_with_one_line(tmp_path, path, value):
    (tmp_path / "hosts.yaml").write_text(yaml.safe_dump(with_value(path, value)))
    with pytest.raises(ConfigError) as refused:
        inventory.load(tmp_path / "hosts.yaml")
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'hosts.yaml'}: stages.prod")
    assert refused.value.exit_code == 2


def test_the_good_stage_loads(tmp_path):
    (tmp_path / "hosts.yaml").write_text(yaml.safe_dump(GOOD))
    assert inventory.load(tmp_path / "hosts.yaml").stage.app.deploy_to == "/srv/shop"


@pytest.mark.parametrize("deploy_to", ["/srv/shop", "/var/www/shop", "/var/lib/shop",
                                       "/home/deploy/shop", "/opt/shop/current-app"])
def test_app_folders_people_use_are_accepted(tmp_path, deploy_to):
    (tmp_path / "hosts.yaml").write_text(yaml.safe_dump(with_value("app.deploy_to",
                                                                   deploy_to)))
    assert inventory.load(tmp_path / "hosts.yaml").stage.app.deploy_to == deploy_to


def test_ruby_strings_in_rendered_configs_carry_no_code():
    """Even a value the schema would refuse renders inert in unicorn.rb / puma.rb."""
    from railsfab.render import ruby_string

    assert ruby_string("/srv/shop/current") == '"/srv/shop/current"'
    hostile = '/srv/x#{`touch /tmp/PWNED`}"; system("id"); "\\'
    literal = ruby_string(hostile)
    assert literal == r'"/srv/x\#{`touch /tmp/PWNED`}\"; system(\"id\"); \"\\"'
    body = literal[1:-1]
    assert all(body[i - 1] == "\\" for i, c in enumerate(body) if c in '"#')
