"""The Gemfile's ruby line against a host's Ruby, before anything is installed."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from railsfab import onhost
from railsfab.gems import missing_gems, missing_gems_message, ruby_requirement, satisfies
from tests.unit.test_source import app


@pytest.mark.parametrize("version,reqs,ok", [
    ("3.3.8", ["3.3.8"], True),
    ("3.3.14", ["3.3.8"], False),
    ("3.3.14", ["3.3"], True),
    ("3.3.14", ["~> 3.3"], True),
    ("3.4.1", ["~> 3.3"], True),
    ("4.0.0", ["~> 3.3"], False),
    ("3.3.14", ["~> 3.3.1"], True),
    ("3.4.0", ["~> 3.3.1"], False),
    ("3.1.2", [">= 3.1", "< 3.3"], True),
    ("3.3.0", [">= 3.1", "< 3.3"], False),
    ("3.1.2", ["2.7.5"], False),
])
def test_ruby_requirements_as_bundler_reads_them(version, reqs, ok):
    assert satisfies(version, reqs) is ok


@pytest.mark.parametrize("gemfile,files,expected", [
    ('source "https://rubygems.org"\nruby "3.3.8"\ngem "rails"\n', {}, ["3.3.8"]),
    ("ruby '~> 3.3', '>= 3.3.1'  # pinned\n", {}, ["~> 3.3", ">= 3.3.1"]),
    ('ruby file: ".ruby-version"\n', {".ruby-version": "ruby-3.3.6\n"}, ["3.3.6"]),
    ('gem "rails"\n', {".ruby-version": "3.3.6\n"}, None),
])
def test_the_gemfiles_ruby_line(tmp_path, gemfile, files, expected):
    from railsfab.source import Source

    assert ruby_requirement(Source(app(tmp_path, {"Gemfile": gemfile, **files}))) == expected


def test_the_gems_bundler_could_not_find():
    out = ("`bundle install --local` exited 7:\nCould not find gem 'brakeman' in locally "
           "installed gems.\nCould not find image_processing-1.12.2 in locally installed gems")
    assert missing_gems(out) == ["brakeman", "image_processing"]
    assert missing_gems("Bundle complete!") == []


def test_which_debian_package_provides_a_missing_gem_asked_on_the_host(tmp_path):
    """gem_packages.sh against a fake apt-cache that knows three packages."""
    fake = tmp_path / "apt-cache"
    fake.write_text('#!/bin/sh\ncase "$3" in\n'
                    '  ruby-pg) echo "Version: 1.5.6-1+b4" ;;\n'
                    '  puma) echo "Version: 6.6.0-4" ;;\n'
                    '  ruby-rails-propshaft) echo "Version: 1.1.0-3" ;;\n'
                    '  ruby-aws-sdk-s3) echo "Version: 1.170.1-1" ;;\nesac\n')
    fake.chmod(0o755)
    r = subprocess.run(["sh", "-s"], input=onhost.load("gem_packages.sh"), text=True,
                       capture_output=True, env={"PATH": f"{tmp_path}:/usr/bin:/bin",
                                                 "GEMS": "pg puma propshaft aws-sdk-s3 kredis"})
    assert r.stdout.splitlines() == ["pg ruby-pg 1.5.6-1+b4", "puma puma 6.6.0-4",
                                     "propshaft ruby-rails-propshaft 1.1.0-3",
                                     "aws-sdk-s3 ruby-aws-sdk-s3 1.170.1-1", "kredis -"]
    message, fix = missing_gems_message(r.stdout, release="Debian 13")
    assert "gem 'pg' is not installed: Debian package ruby-pg (1.5.6-1+b4) provides it" in message
    assert "gem 'kredis' is not installed and no Debian 13 package provides it" in message
    assert fix.startswith("add ruby-pg puma ruby-rails-propshaft ruby-aws-sdk-s3 to app.packages")
    assert "remove kredis from the Gemfile" in fix


# --- app.gems: bundler ----------------------------------------------------------------------

LOCK = """GEM
  remote: https://rubygems.org/
  specs:
    bcrypt (3.1.20)
    mysql2 (0.5.6)
    nokogiri (1.16.7-x86_64-linux)
      racc (~> 1.4)
    pg (1.5.9)
    rack (3.1.8)
    racc (1.8.1)

PLATFORMS
  x86_64-linux

DEPENDENCIES
  bcrypt
  mysql2
  nokogiri
  pg

BUNDLED WITH
   2.5.22
"""


def test_native_gems_built_from_source_need_compilers_and_their_headers():
    from railsfab.gems import build_packages, locked_gems

    assert ("nokogiri", "1.16.7", "x86_64-linux") in locked_gems(LOCK)
    assert build_packages(LOCK) == ["build-essential", "ruby-dev", "libmariadb-dev",
                                    "libpq-dev"]
    # racc is native too (from source here), bcrypt needs nothing beyond the compiler;
    # nokogiri comes prebuilt: no libxml2-dev
    prebuilt = LOCK.replace("    mysql2 (0.5.6)\n", "").replace("    pg (1.5.9)\n", "") \
        .replace("    bcrypt (3.1.20)\n", "").replace("    racc (1.8.1)\n", "")
    assert build_packages(prebuilt) == []
    assert "libxml2-dev" not in build_packages(LOCK)


def test_bundlers_config_for_deployment_mode_with_a_mirror():
    from railsfab.gems import bundle_config

    text = bundle_config(path="/srv/shop/shared/bundle", without="development:test",
                         mirror="http://10.228.0.1:9292")
    assert text.splitlines() == [
        "---", 'BUNDLE_DEPLOYMENT: "true"', 'BUNDLE_PATH: "/srv/shop/shared/bundle"',
        'BUNDLE_WITHOUT: "development:test"',
        'BUNDLE_MIRROR__HTTPS://RUBYGEMS__ORG/: "http://10.228.0.1:9292"']
    assert "MIRROR" not in bundle_config(path="/b", without="test", mirror=None)


def test_every_command_gets_the_same_bundler_environment():
    from railsfab import commands
    from railsfab.paths import Paths

    bundler = Paths("shop", "/srv/shop", "puma", "bundler")
    cmd = str(commands.rails(bundler, "/srv/shop/releases/1", "deploy", "production", "db:seed"))
    assert "BUNDLE_GEMFILE=/srv/shop/releases/1/Gemfile " in cmd
    assert "BUNDLE_APP_CONFIG=/srv/shop/shared/config/bundle" in cmd
    install = str(commands.bundle_install(bundler, "/srv/shop/releases/1", "deploy"))
    assert "bundle install" in install and "--local" not in install
    assert "BUNDLE_APP_CONFIG=/srv/shop/shared/config/bundle" in install
    debian = Paths("shop", "/srv/shop", "puma", "debian")
    assert "BUNDLE_APP_CONFIG" not in str(commands.rails(debian, "/r", "deploy", "production"))
    assert "BUNDLE_GEMFILE=/r/Gemfile.railsfab" in str(
        commands.rails(debian, "/r", "deploy", "production"))


def test_bundler_output_read_back():
    from railsfab.gems import installed_summary, unavailable_message

    out = ("Using rack 2.2.22\nUsing rails 6.1.7.10\nFetching rack-cors 1.1.1\n"
           "Installing rack-cors 1.1.1\nBundle complete!")
    assert installed_summary(out) == "installed rack-cors 1.1.1; 2 already in shared/bundle"
    err = ("Could not find left-pad-9.9.9 in any of the sources\n"
           "Run `bundle install` elsewhere")
    assert unavailable_message(err, "http://10.228.0.1:9292") == (
        "the Gemfile.lock pins left-pad 9.9.9, which http://10.228.0.1:9292 does not have: "
        "nothing was switched")
    assert unavailable_message("something else", "x") is None
    bundler_2_3 = ("Your bundle is locked to rack-cors (9.9.9) from rubygems repository\n"
                   "https://rubygems.org/ or installed locally, but that version can no "
                   "longer be\nfound in that source.")
    assert unavailable_message(bundler_2_3, "the mirror").startswith(
        "the Gemfile.lock pins rack-cors 9.9.9, which the mirror does not have")


def test_a_gemfile_pin_debian_cannot_meet_is_named_as_a_pin_not_a_missing_package():
    from railsfab.gems import missing_gems_message, pinned
    out = ("`bundle install --local` exited 7:\nCould not find gem 'rails (= 7.1.3.2)' in "
           "locally installed gems.\n\nThe source contains the following gems matching "
           "'rails':\n  * rails-7.2.2.2\n")
    assert pinned(out) == {"rails": ("= 7.1.3.2", ["7.2.2.2"])}
    message, fix = missing_gems_message("rails ruby-rails 2:7.2.2.2+dfsg-1\n", release="Debian 13",
                                        bundler_output=out)
    assert message == ("bundle install --local: the Gemfile pins rails = 7.1.3.2; Debian 13 "
                       "has 7.2.2.2")
    assert fix == ('loosen the pin of rails in the Gemfile (e.g. gem "rails", "~> 7.2"), or use '
                   "gems: bundler with the app's Gemfile.lock")
    assert "app.packages" not in fix


@pytest.mark.parametrize("gemfile,missing", [
    ('gem "rails"\ngem "puma", ">= 5.0"\n', True),
    ('gem "rails"\ngem "unicorn"\n', False),
    ("gem 'unicorn', '~> 6.1'  # the app server\n", False),
    ('group :development do\n  gem "unicorn"\nend\n', True),
    ('group :production, :development do\n  gem "unicorn"\nend\n', False),
    ('gem "unicorn", group: :development\n', True),
    ('# gem "unicorn"\n', True),
])
def test_the_app_servers_gem_must_be_in_the_gemfile_outside_the_groups_left_out(gemfile,
                                                                               missing):
    from railsfab.gems import server_gem_missing
    assert server_gem_missing(gemfile, "unicorn", "development:test") is missing


def test_a_lockfile_without_a_linux_platform_is_named_before_any_host(tmp_path, monkeypatch):
    import shutil

    import yaml

    from railsfab import inventory
    from railsfab.errors import ConfigError
    from railsfab.gems import lock_platforms
    from railsfab.ops import desired

    root = Path(__file__).resolve().parents[2]
    src = tmp_path / "app"
    shutil.copytree(root / "examples/sample_app", src)
    lock = (src / "Gemfile.lock").read_text()
    assert "x86_64-linux" in lock_platforms(lock)
    (src / "Gemfile.lock").write_text(re.sub(r"^PLATFORMS\n(  .*\n)+", "PLATFORMS\n  "
                                             "arm64-darwin-23\n", lock, flags=re.M))
    monkeypatch.setenv("SECRET_KEY_BASE", "k" * 64)
    doc = {"default_stage": "p", "stages": {"p": {
        "hosts": [{"name": "web1", "address": "198.51.100.7"}],
        "app": {"name": "shop", "source": str(src), "deploy_to": "/srv/shop",
                "gems": "bundler"}}}}
    (tmp_path / "hosts.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="resolved for arm64-darwin-23 only") as e:
        desired.build(inventory.load(tmp_path / "hosts.yaml"))
    assert e.value.fix.startswith("`bundle lock --add-platform x86_64-linux`")
