"""The sandbox gem mirror's extra gems: each .gem's metadata (RubyGems' YAML gemspec) read into
the mirror's index, and the served folder with the cached mirror's gems beside them."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

from railsfab.sandbox.gem_extra import gem_entry, with_extra

SPEC = """--- !ruby/object:Gem::Specification
name: stamp
version: !ruby/object:Gem::Version
  version: 0.2.0
platform: ruby
authors:
- t
bindir: bin
date: 2026-12-06 00:00:00.000000000 Z
dependencies:
- !ruby/object:Gem::Dependency
  name: rack
  requirement: !ruby/object:Gem::Requirement
    requirements:
    - - ">="
      - !ruby/object:Gem::Version
        version: '2.0'
    - - "<"
      - !ruby/object:Gem::Version
        version: '4'
  type: :runtime
  prerelease: false
- !ruby/object:Gem::Dependency
  name: minitest
  requirement: !ruby/object:Gem::Requirement
    requirements:
    - - ">="
      - !ruby/object:Gem::Version
        version: '0'
  type: :development
  prerelease: false
required_ruby_version: !ruby/object:Gem::Requirement
  requirements:
  - - ">="
    - !ruby/object:Gem::Version
      version: '3.0'
required_rubygems_version: !ruby/object:Gem::Requirement
  requirements:
  - - ">="
    - !ruby/object:Gem::Version
      version: '0'
"""


def gem(path: Path) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = gzip.compress(SPEC.encode())
        info = tarfile.TarInfo("metadata.gz")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    return path


def test_a_gems_metadata_becomes_its_index_entry(tmp_path):
    e = gem_entry(gem(tmp_path / "stamp-0.2.0.gem"))
    assert {k: v for k, v in e.items() if k != "sha256"} == {
        "name": "stamp", "version": "0.2.0", "platform": "ruby",
        "dependencies": [["rack", ">= 2.0, < 4"]], "ruby": ">= 3.0", "rubygems": ">= 0"}


def test_the_served_folder_holds_the_mirror_and_the_extra_gems(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "gems").mkdir(parents=True)
    (mirror / "gems/rack-3.1.8.gem").write_bytes(b"rack")
    (mirror / "index.json").write_text(json.dumps([
        {"name": "rack", "version": "3.1.8", "platform": "ruby", "dependencies": [],
         "ruby": ">= 2.4", "rubygems": ">= 0", "sha256": "ab"}]))
    extra = tmp_path / "extra"
    extra.mkdir()
    gem(extra / "stamp-0.2.0.gem")
    served = with_extra(mirror, extra, tmp_path / "state")
    assert sorted(p.name for p in (served / "gems").iterdir()) == ["rack-3.1.8.gem",
                                                                  "stamp-0.2.0.gem"]
    assert (served / "info/stamp").read_text().startswith("---\n0.2.0 rack:>= 2.0&< 4|checksum:")
    assert "stamp 0.2.0 " in (served / "versions").read_text()
    assert with_extra(mirror, extra, tmp_path / "state") == served  # unchanged: kept
