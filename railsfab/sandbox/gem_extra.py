"""Gems the sandbox's mirror serves beside Debian's: the .gem files of a folder the stage
names (`sandbox.gem_mirror.extra`), e.g. gems of the app that Debian does not package, as a
company gem server would hold them. Their metadata is read from each .gem (RubyGems' YAML
gemspec), the served folder is the cached mirror linked file by file plus these, and the
compact index is written again over both."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tarfile
from pathlib import Path

import yaml


class _RubyYaml(yaml.SafeLoader):
    """RubyGems' gemspec YAML: !ruby/object:Gem::... tags read as plain mappings/scalars."""


def _ruby(loader: yaml.SafeLoader, suffix: str, node: yaml.Node):
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_RubyYaml.add_multi_constructor("!ruby/", _ruby)


def _requirement(req: dict | None) -> str:
    parts = (req or {}).get("requirements") or [[">=", {"version": "0"}]]
    return ", ".join(f"{op} {v.get('version') if isinstance(v, dict) else v}" for op, v in parts)


def gem_entry(path: Path) -> dict:
    """The mirror index's entry for one .gem file (as repack_gems.rb writes index.json)."""
    with tarfile.open(path) as tar:
        member = tar.extractfile("metadata.gz")
        spec = yaml.load(gzip.decompress(member.read()), Loader=_RubyYaml)  # noqa: S506
    version = spec["version"]["version"] if isinstance(spec["version"], dict) else spec["version"]
    platform = spec.get("platform") or "ruby"
    deps = [[d["name"], _requirement(d.get("requirement"))] for d in spec.get("dependencies") or []
            if str(d.get("type", ":runtime")).lstrip(":") == "runtime"]
    return {"name": spec["name"], "version": str(version), "platform": str(platform),
            "dependencies": deps, "ruby": _requirement(spec.get("required_ruby_version")),
            "rubygems": _requirement(spec.get("required_rubygems_version")),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def with_extra(mirror: Path, extra: Path, state: Path) -> Path:
    """The folder to serve: `mirror` (cached, shared) plus the .gem files of `extra`, built in
    `state` again whenever those change."""
    from railsfab.sandbox.gem_mirror import write_compact_index

    gems = sorted(extra.glob("*.gem"))
    key = hashlib.sha256(str(mirror).encode() + b"".join(
        p.name.encode() + p.read_bytes() for p in gems)).hexdigest()[:12]
    served = state / f"gem-mirror-{key}"
    if (served / "versions").is_file():
        return served
    for old in state.glob("gem-mirror-*"):
        shutil.rmtree(old, ignore_errors=True)
    work = state / f"gem-mirror-{key}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    (work / "gems").mkdir(parents=True)
    for g in (mirror / "gems").glob("*.gem"):
        os.link(g, work / "gems" / g.name)
    index = json.loads((mirror / "index.json").read_text())
    names = {e["name"] for e in (gem_entry(p) for p in gems)}
    index = [e for e in index if e["name"] not in names]  # the folder's versions win
    for p in gems:
        shutil.copy(p, work / "gems" / p.name)
        index.append(gem_entry(p))
    (work / "index.json").write_text(json.dumps(index))
    write_compact_index(work, index)
    work.rename(served)
    return served
