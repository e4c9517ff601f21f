"""Rails' own conventions, on the session's sandbox: an app whose database.yml is not in its
source (gitignored: DATABASE_URL alone, or a linked file kept on the hosts), a database.yml
that would migrate another database (refused before any host switches, naming the file), and
settings the app reads that only app.env gives (named before any host is touched)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import run_fab

ELSEWHERE = """\
production:
  adapter: mysql2
  encoding: utf8mb4
  url: mysql2://someone@127.0.0.1:3306/other_production
"""
LINKED = """\
production:
  adapter: mysql2
  encoding: utf8mb4
  pool: 5
"""


def ssh(sandbox, host: str, cmd: str) -> str:
    from tests.integration.test_deploy import ssh as on_host
    return on_host(sandbox, host, cmd)


@pytest.fixture(scope="module")
def app(stages):
    src = stages.pristine()
    (src / "config/database.yml").unlink()  # gitignored in the app, as many keep it
    return src


def test_an_app_without_database_yml_gets_its_database_from_database_url(stages, app, sandbox,
                                                                           inv):
    path = stages.reach(stages.variant("hosts-no-database-yml.yaml", lambda st: None))
    r = run_fab(path, "check")
    assert r.returncode == 0, r.stdout + r.stderr
    env = ssh(sandbox, "web1", "sudo cat /etc/railsfab/sample.env")
    db = inv.stage.app.database
    assert re.search(rf"^DATABASE_URL='mysql2://{db.user}:[^@']+@{re.escape(db.host)}:3306/"
                     rf"{db.name}'$", env, re.M)


def test_a_database_yml_naming_another_database_is_refused_before_any_switch(stages, app,
                                                                            sandbox, tmp_path,
                                                                            inv):
    before = ssh(sandbox, "web2", "readlink /srv/sample/current")
    other = tmp_path / "database.yml"
    other.write_text(ELSEWHERE)

    def linked(st):
        st["app"]["linked_files"] = [{"path": "config/database.yml", "from": str(other)}]
    path = stages.variant("hosts-linked-elsewhere.yaml", linked)
    r = run_fab(path, "deploy")
    assert r.returncode != 0
    out = re.sub(r"\s+", " ", r.stdout + r.stderr)
    assert ("the release would migrate someone@127.0.0.1/other_production, not the stage's "
            f"database {inv.stage.app.database.user}@") in out
    assert ("config/database.yml (a link to /srv/sample/shared/config/database.yml) decides it "
            "(its production entry); nothing was migrated") in out
    assert "fix: correct the linked file /srv/sample/shared/config/database.yml" in out
    assert ssh(sandbox, "web2", "readlink /srv/sample/current") == before

    other.write_text(LINKED)  # the right one: DATABASE_URL fills in the rest
    r = run_fab(path, "deploy")
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"linked files\s+\S+\s+wrote config/database.yml \(from ", r.stdout)
    got = ssh(sandbox, "web1", "sudo readlink /srv/sample/current/config/database.yml && "
                               "sudo stat -c '%U %a' /srv/sample/shared/config/database.yml")
    assert got.split() == ["/srv/sample/shared/config/database.yml", "root", "640"]
    again = run_fab(path, "deploy")
    assert again.returncode == 0 and re.search(r"ok\s+linked files", again.stdout), again.stdout


def test_a_setting_only_app_env_gives_is_named_before_any_host_then_read(stages, app, sandbox):
    (app / "config/initializers/shop.rb").write_text(
        'Rails.application.config.x.shop_name = ENV.fetch("SHOP_NAME")\n')
    path = stages.variant("hosts-app-env-missing.yaml", lambda st: None)
    r = run_fab(path, "deploy")
    assert r.returncode != 0
    assert "SHOP_NAME (config/initializers/shop.rb:1) without a default" in r.stdout + r.stderr
    assert "facts" not in r.stdout  # no host was asked anything

    def env(st):
        st["app"]["env"] = {"SHOP_NAME": "Bolts & Nuts"}
    path = stages.reach(stages.variant("hosts-app-env.yaml", env))
    r = run_fab(path, "rails", "--", "runner", "puts Rails.configuration.x.shop_name")
    assert r.returncode == 0 and "Bolts & Nuts" in r.stdout, r.stdout + r.stderr


GREETER_SPEC = """Gem::Specification.new do |s|
  s.name = "greeter"
  s.version = "0.1.0"
  s.summary = "a path gem with an executable"
  s.authors = ["t"]
  s.files = ["lib/greeter.rb", "exe/greet"]
  s.bindir = "exe"
  s.executables = ["greet"]
end
"""
STAMP_SPEC = """Gem::Specification.new do |s|
  s.name = "stamp"
  s.version = "0.1.0"
  s.summary = "a gem only the app's vendor/cache has"
  s.authors = ["t"]
  s.files = ["lib/stamp.rb"]
end
"""


def stamp_gem(sandbox) -> bytes:
    """stamp-0.1.0.gem, built by the hosts' own RubyGems (as `bundle cache` keeps gems)."""
    import base64

    files = {"stamp.gemspec": STAMP_SPEC,
             "lib/stamp.rb": 'module Stamp\n  X = "stamped from vendor/cache"\nend\n'}
    script = "set -e; d=$(mktemp -d); cd $d; mkdir lib; " + "; ".join(
        f"echo {base64.b64encode(t.encode()).decode()} | base64 -d > {n}"
        for n, t in files.items()) + "; gem build -q stamp.gemspec >/dev/null 2>&1; " \
        "base64 -w0 stamp-0.1.0.gem; rm -rf $d"
    return base64.b64decode(ssh(sandbox, "web1", script))


def test_path_gems_with_executables_and_the_apps_vendor_cache_install(stages, app, sandbox):
    """gems: debian: what Debian's packages do not hold installs into shared/gems (GEM_HOME):
    a path gem's executable, and a gem from the app's vendor/cache (no gem source)."""

    (app / "config/initializers/shop.rb").unlink(missing_ok=True)  # the test before's
    gem = app / "vendor/gems/greeter"
    (gem / "lib").mkdir(parents=True)
    (gem / "exe").mkdir()
    (gem / "greeter.gemspec").write_text(GREETER_SPEC)
    (gem / "lib/greeter.rb").write_text('module Greeter\n  HI = "hello from a path gem"\nend\n')
    (gem / "exe/greet").write_text("#!/usr/bin/env ruby\nputs Greeter::HI\n")
    (gem / "exe/greet").chmod(0o755)
    (app / "vendor/cache").mkdir(parents=True)
    (app / "vendor/cache/stamp-0.1.0.gem").write_bytes(stamp_gem(sandbox))
    with (app / "Gemfile").open("a") as f:
        f.write('\ngem "greeter", path: "vendor/gems/greeter"\ngem "stamp"\n')
    path = stages.reach(stages.variant("hosts-vendored.yaml", lambda st: None))
    r = run_fab(path, "rails", "--", "runner", "puts Greeter::HI, Stamp::X")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "hello from a path gem" in r.stdout and "stamped from vendor/cache" in r.stdout
    assert ssh(sandbox, "web1", "sudo ls /srv/sample/shared/gems/bin") == "greet"
