"""The Gemfile's ruby line against a host's Ruby, before anything is installed."""

from __future__ import annotations

import subprocess

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
