"""The Gemfile's ruby line against a host's Ruby, before anything is installed."""

from __future__ import annotations

import pytest

from railsfab.gems import ruby_requirement, satisfies
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
