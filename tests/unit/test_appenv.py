"""The app's environment as Rails reads it: DATABASE_URL, app.env, the names the app's own
storage.yml reads, and the env preflight (names read without a default that nothing sets)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from railsfab import appenv, inventory
from railsfab.errors import ConfigError
from railsfab.inventory import Database
from railsfab.ops import desired

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION_RB = """\
Rails.application.configure do
  config.log_level = ENV.fetch("RAILS_LOG_LEVEL", "info")
  config.public_file_server.enabled = ENV["RAILS_SERVE_STATIC_FILES"].present?
  config.hosts << ENV.fetch("APP_HOST") { "example.com" }
  config.x.stripe = ENV.fetch("STRIPE_PUBLISHABLE_KEY")
  # config.x.old = ENV.fetch("COMMENTED_OUT")
  config.x.mailer = ENV.fetch('MAILER_HOST') do "localhost" end
end
"""

DEVELOPMENT_RB = 'Rails.application.configure { config.x.y = ENV.fetch("ONLY_IN_DEV") }\n'

CABLE_YML = """\
default: &default
  adapter: redis
  channel_prefix: <%= ENV["CABLE_PREFIX"] %>

development:
  adapter: async
  url: <%= ENV["DEV_ONLY_URL"] %>

production:
  <<: *default
  url: <%= ENV.fetch("REDIS_URL") { "redis://localhost:6379/1" } %>
"""

STORAGE_YML = """\
local:
  service: Disk
  root: <%= Rails.root.join("storage") %>

amazon:
  service: S3
  access_key_id: <%= ENV["AWS_ACCESS_KEY_ID"] %>
  region: <%= ENV.fetch("AWS_S3_REGION") %>
  bucket: <%= ENV["AWS_S3_BUCKET_NAME"] %>

other:
  service: S3
  bucket: <%= ENV["NOT_USED_BUCKET"] %>
"""


def test_database_url_is_rails_own_url_with_the_password_escaped():
    pg = Database(adapter="postgresql", host="db.internal", name="shop", user="shop")
    assert appenv.database_url(pg, "p@ss/w:rd") == \
        "postgresql://shop:p%40ss%2Fw%3Ard@db.internal:5432/shop"
    my = Database(host="10.0.0.5", name="shop", user="app")
    assert appenv.database_url(my, "") == "mysql2://app@10.0.0.5:3306/shop"


def test_names_read_without_a_default_are_found_where_they_are_read():
    files = {"config/environments/production.rb": PRODUCTION_RB,
             "config/environments/development.rb": DEVELOPMENT_RB,
             "config/cable.yml": CABLE_YML,
             "config/deploy.rb": 'set :repo_url, ENV.fetch("CAP_REPO")\n'}
    uses = appenv.env_uses(files, "production")
    assert [(u.name, u.where, u.required) for u in uses] == [
        ("STRIPE_PUBLISHABLE_KEY", "config/environments/production.rb:5", True),
        ("CABLE_PREFIX", "config/cable.yml:3", False),  # merged from the default section
    ]


def test_only_the_service_the_app_uses_is_read_in_storage_yml():
    uses = appenv.env_uses({"config/storage.yml": STORAGE_YML}, "production",
                           used={"config/storage.yml": "amazon"})
    assert {u.name for u in uses} == {"AWS_S3_REGION", "AWS_S3_BUCKET_NAME", "AWS_ACCESS_KEY_ID"}


def test_the_preflight_names_what_nothing_sets_and_fails_only_on_required_names():
    uses = [appenv.EnvUse("STRIPE_KEY", "config/initializers/stripe.rb:1", True),
            appenv.EnvUse("CABLE_PREFIX", "config/cable.yml:3", False),
            appenv.EnvUse("RAILS_MAX_THREADS", "config/x.rb:2", True)]  # the unit sets it
    error, warning = appenv.preflight(uses, {"RAILS_ENV"}, "hosts.yaml")
    assert error == ("the app's config reads STRIPE_KEY (config/initializers/stripe.rb:1) "
                     "without a default, and the env file will not set it: the app would not "
                     "boot")
    assert warning.startswith("the app's config reads CABLE_PREFIX (config/cable.yml:3), which "
                              "nothing sets")
    assert appenv.preflight(uses, {"STRIPE_KEY", "CABLE_PREFIX"}, "hosts.yaml") == (None, "")


def test_the_storage_services_own_names_are_read():
    assert appenv.storage_names(STORAGE_YML, "amazon") == {
        "access_key_id": "AWS_ACCESS_KEY_ID", "region": "AWS_S3_REGION",
        "bucket": "AWS_S3_BUCKET_NAME"}
    assert appenv.mapped_note({"bucket": "S3_BUCKET"}) == ""
    assert appenv.mapped_note({"bucket": "AWS_S3_BUCKET_NAME"}) == (
        "; it reads bucket from AWS_S3_BUCKET_NAME, which railsfab sets to the stage's")


def build(tmp_path, monkeypatch, *, files: dict[str, str] | None = None, app: dict | None = None,
          secrets: str = "") -> desired.Desired:
    src = tmp_path / "app"
    shutil.copytree(ROOT / "examples/sample_app", src)
    for rel, text in (files or {}).items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(text)
    secrets_file = tmp_path / "secrets.env"
    secrets_file.write_text("SECRET_KEY_BASE=" + "k" * 64 + "\nDATABASE_PASSWORD=s3cr@t\n"
                            + secrets)
    secrets_file.chmod(0o600)
    monkeypatch.delenv("SECRET_KEY_BASE", raising=False)
    doc = {"default_stage": "prod", "stages": {"prod": {
        "hosts": [{"name": "web1", "address": "198.51.100.7"}],
        "app": {"name": "shop", "source": str(src), "deploy_to": "/srv/shop",
                "secrets_file": str(secrets_file),
                "database": {"adapter": "postgresql", "host": "db.internal", "name": "shop",
                             "user": "shop"}, **(app or {})},
        "aws": {"region": "ap-northeast-1", "bucket": "shop-up"}}}}
    (tmp_path / "hosts.yaml").write_text(yaml.safe_dump(doc))
    return desired.build(inventory.load(tmp_path / "hosts.yaml"))


def test_the_env_file_has_database_url_app_env_and_the_apps_own_s3_names(tmp_path, monkeypatch):
    d = build(tmp_path, monkeypatch, files={"config/storage.yml": STORAGE_YML},
              app={"env": {"APP_HOST": "shop.example.com", "WORKERS_FAST": 2}},
              secrets="AWS_S3_REGION=ignored-by-the-mapping\n")
    env = dict(line.split("=", 1) for line in d.env_text.splitlines()[1:])
    assert env["DATABASE_URL"] == "'postgresql://shop:s3cr%40t@db.internal:5432/shop'"
    assert env["DATABASE_HOST"] == "'db.internal'"  # DATABASE_* stay, for apps that read them
    assert env["APP_HOST"] == "'shop.example.com'" and env["WORKERS_FAST"] == "'2'"
    assert env["AWS_S3_BUCKET_NAME"] == "'shop-up'"
    assert env["AWS_S3_REGION"] == "'ignored-by-the-mapping'"  # the secrets file wins
    assert "it reads region from AWS_S3_REGION, bucket from AWS_S3_BUCKET_NAME" in d.storage_note
    assert "AWS_ACCESS_KEY_ID" in d.env_note  # nothing sets it: the instance role does


def test_a_name_read_without_a_default_fails_the_deploy_before_any_host(tmp_path, monkeypatch):
    init = {"config/initializers/stripe.rb": 'Stripe.api_key = ENV.fetch("STRIPE_API_KEY")\n'}
    with pytest.raises(ConfigError) as e:
        build(tmp_path, monkeypatch, files=init)
    assert "STRIPE_API_KEY (config/initializers/stripe.rb:1) without a default" in str(e.value)
    assert "stages.prod.app.env of hosts.yaml (or in the secrets file" in e.value.fix
    shutil.rmtree(tmp_path / "app")
    assert build(tmp_path, monkeypatch, files=init, secrets="STRIPE_API_KEY=sk\n")


def test_app_env_may_not_set_what_the_stage_sets_nor_secrets(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="app.env sets DATABASE_URL, RAILS_ENV"):
        build(tmp_path, monkeypatch, app={"env": {"RAILS_ENV": "staging", "DATABASE_URL": "x"}})
    shutil.rmtree(tmp_path / "app")
    with pytest.raises(ConfigError, match="STRIPE_SECRET looks secret"):
        build(tmp_path, monkeypatch, app={"env": {"STRIPE_SECRET": "sk"}})


def test_a_release_that_would_migrate_another_database_is_named_with_the_file_that_decides():
    from railsfab.ops.runs import migrate_failure
    db = Database(adapter="postgresql", host="db.internal", name="shop", user="shop")
    said = ('`bin/rails runner ...` exited 3:\nrailsfab-database: {"file":"config/database.yml",'
            '"env":"production","name":"primary","got":["db.internal","shop_prod","postgres"]}')
    message, fix = migrate_failure(said, db, "shop")
    assert message == ("the release would migrate postgres@db.internal/shop_prod, not the "
                       "stage's database shop@db.internal/shop: config/database.yml decides it "
                       "(its production entry); nothing was migrated")
    assert fix.startswith("let shop's config/database.yml production entry take DATABASE_URL")
    linked = said.replace('"config/database.yml"', '"config/database.yml (a link to '
                          '/srv/shop/shared/config/database.yml)"')
    assert migrate_failure(linked, db, "shop")[1].startswith(
        "correct the linked file /srv/shop/shared/config/database.yml (app.linked_files)")
    other = "`bin/rails runner ...` exited 1:\nPG::UndefinedTable: relation \"x\" does not exist"
    assert migrate_failure(other, db, "shop") == (
        other, "fix the migration, then deploy again (no host switched release)")


def test_an_app_server_the_gemfile_does_not_list_is_named_before_any_host(tmp_path,
                                                                          monkeypatch):
    src = ROOT / "examples/sample_app/Gemfile"
    gemfile = src.read_text().replace('gem "unicorn"', 'gem "puma"')
    with pytest.raises(ConfigError) as e:
        build(tmp_path, monkeypatch, files={"Gemfile": gemfile})
    assert "app_server is unicorn, but the Gemfile has no `gem \"unicorn\"` (it has puma)" \
        in str(e.value)
    assert e.value.fix == ('add `gem "unicorn"` to the Gemfile, or set app_server: puma in '
                           "stage prod of hosts.yaml")


def test_how_uploads_are_served_is_said_from_the_apps_own_config(tmp_path, monkeypatch):
    d = build(tmp_path, monkeypatch)  # the sample app sets proxy mode
    assert "uploads served through the app (its config: resolve_model_to_route" in d.storage_note
    prod = (ROOT / "examples/sample_app/config/environments/production.rb").read_text()
    shutil.rmtree(tmp_path / "app")
    d = build(tmp_path, monkeypatch, files={"config/environments/production.rb": prod.replace(
        "config.active_storage.resolve_model_to_route", "# config.active_storage.x")})
    assert "uploads served by redirects to presigned S3 URLs (Rails' default" in d.storage_note


def test_pumas_notify_follows_the_hosts_puma_with_debians_gems():
    from railsfab.facts import Facts
    from railsfab.ops.desired import puma_notifies
    assert puma_notifies(Facts({"installed": {"puma": "6.6.0-4"}}))
    assert not puma_notifies(Facts({"installed": {"puma": "5.6.5-3+deb12u2"}}))
    assert puma_notifies(Facts({"installed": {}, "os": {"id": "debian", "version": "13"}}))
    assert not puma_notifies(Facts({"installed": {}, "os": {"id": "debian", "version": "12"}}))
    assert puma_notifies(Facts({"os": {"id": "ubuntu", "version": "24.04"}}))
