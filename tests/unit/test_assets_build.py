"""railsfab.assets_build: one host precompiles, the others unpack its checked archive."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import tarfile
from types import SimpleNamespace

import pytest

from railsfab import assets_build
from railsfab.ops.base import Change, NoChange, Plan, Planned, Script


def tgz(members: list[tuple[str, bytes | None, bytes]]) -> bytes:
    """(name, data or None for a folder, type) -> a gzip'd tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = "/etc/shadow"
            if data is not None:
                info.size = len(data)
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def test_repack_keeps_plain_files_under_assets():
    data = tgz([("assets", None, tarfile.DIRTYPE),
                ("assets/app-abc.css", b"body{}", tarfile.REGTYPE),
                ("assets/.sprockets-manifest-1.json", b"{}", tarfile.REGTYPE)])
    out, files, build = assets_build.repack(data, "web1")
    # the build's id is its manifest's sha256, as the facts and fab check read it on a host
    assert files == 2 and build == hashlib.sha256(b"{}").hexdigest()
    with tarfile.open(fileobj=io.BytesIO(out)) as t:
        assert {m.name: m.mode for m in t} == {"assets": 0o755, "assets/app-abc.css": 0o644,
                                                "assets/.sprockets-manifest-1.json": 0o644}
    other = tgz([("assets/.sprockets-manifest-1.json", b"{ }", tarfile.REGTYPE)])
    assert assets_build.repack(other, "web2")[2] != build
    nested = tgz([("assets/x/.manifest.json", b"{}", tarfile.REGTYPE)])
    assert assets_build.repack(nested, "web2")[2] == ""


@pytest.mark.parametrize("name,kind", [
    ("assets/../../etc/cron.d/x", tarfile.REGTYPE),
    ("/etc/passwd", tarfile.REGTYPE),
    ("other/file", tarfile.REGTYPE),
    ("assets/link", tarfile.SYMTYPE),
    ("assets/bad\x1b[31mname", tarfile.REGTYPE),
])
def test_repack_refuses_what_is_not_a_plain_asset(name, kind):
    data = tgz([(name, b"x" if kind == tarfile.REGTYPE else None, kind)])
    with pytest.raises(ValueError, match="web1's public/assets has"):
        assets_build.repack(data, "web1")


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    """A whole Desired (the sample app's), its asset inputs digest abc123."""
    from tests.unit.test_plans import stage

    with pytest.MonkeyPatch.context() as mp:
        d = stage(tmp_path_factory.mktemp("assets"), mp)
    return dataclasses.replace(d, digests=dataclasses.replace(d.digests, assets="abc123"))


def plans(*needing: str, reusing: tuple[str, ...] = ()) -> dict[str, dict]:
    out = {}
    for n in (*needing, *reusing):
        o = (Change("RAILS_ENV=production assets:precompile", disturbs=False,
                    scripts=(Script("precompile"),)) if n in needing
             else NoChange("asset inputs unchanged, reused", scripts=(Script("cp -al"),)))
        out[n] = {"prepare": Plan([Planned("release", Change("create", disturbs=False)),
                                   Planned("assets", o)])}
    return out


def test_the_first_host_that_needs_it_builds_the_others_receive(d, tmp_path):
    p = plans("web1", "web2", "web3", reusing=("web4",))
    shared = assets_build.arrange(d, p, tmp_path)
    assert shared.builder == "web1" and not shared.ready.is_set()
    built = p["web1"]["prepare"].get("assets")
    assert built.scripts == (Script("precompile"),) and built.run == shared.built
    for n in ("web2", "web3"):
        o = p[n]["prepare"].get("assets")
        assert o.run == shared.receive and not o.scripts
        assert "from web1's build (no precompile here)" in o.what
    # web4 would reuse its previous assets, but nothing says they are the build web1 makes
    assert "not one build (web4 none)" in p["web4"]["prepare"].get("assets").what


def test_a_builder_that_fails_before_building_frees_the_others(d, tmp_path):
    shared = assets_build.arrange(d, plans("web1", "web2"), tmp_path)
    shared.settle("web2")
    assert not shared.ready.is_set()
    shared.settle("web1")
    assert shared.ready.is_set() and "web1" in shared.error
    with pytest.raises(Exception, match="web1, which builds"):
        shared.receive(SimpleNamespace(name="web2", conn=None))


def test_assets_built_before_are_shipped_and_built_nowhere(d, tmp_path):
    build = kept(tmp_path)
    p = plans("web1", "web2")
    shared = assets_build.arrange(d, p, tmp_path)
    assert shared.builder is None and shared.ready.is_set() and shared.files == 2
    assert shared.data == (tmp_path / "abc123.tar.gz").read_bytes()
    assert shared.id == build
    assert all(p[n]["prepare"].get("assets").run == shared.receive for n in ("web1", "web2"))


def kept(folder) -> str:
    out, _, build = assets_build.repack(tgz([("assets/a.css", b"a", tarfile.REGTYPE),
                                             ("assets/.manifest.json", b"{}", tarfile.REGTYPE)]),
                                        "web1")
    (folder / "abc123.tar.gz").write_bytes(out)
    return build


def test_hosts_whose_assets_are_one_build_reuse_them(d, tmp_path):
    p = plans(reusing=("web1", "web2"))
    assert assets_build.arrange(d, p, tmp_path, {"web1": "a" * 64,
                                                          "web2": "a" * 64}) is None
    assert isinstance(p["web2"]["prepare"].get("assets"), NoChange)


@pytest.mark.parametrize("builds", [{"web1": "a" * 64, "web2": "b" * 64},
                                    {"web1": "a" * 64, "web2": None}, {}])
def test_hosts_whose_assets_are_not_one_build_all_receive_one(d, tmp_path, builds):
    p = plans(reusing=("web1", "web2"))
    shared = assets_build.arrange(d, p, tmp_path, builds)
    assert shared.builder == "web1"  # nothing kept here: the first precompiles again
    assert p["web1"]["prepare"].get("assets").run == shared.built
    o = p["web2"]["prepare"].get("assets")
    assert o.run == shared.receive and "not one build" in o.what


def test_a_joining_host_gets_the_build_the_others_reuse_or_all_get_one(d, tmp_path):
    build = kept(tmp_path)
    p = plans("web3", reusing=("web1", "web2"))
    shared = assets_build.arrange(d, p, tmp_path, {"web1": build, "web2": build})
    assert shared.builder is None and p["web3"]["prepare"].get("assets").run == shared.receive
    assert isinstance(p["web1"]["prepare"].get("assets"), NoChange)
    p = plans("web3", reusing=("web1", "web2"))  # their build is not the kept one
    shared = assets_build.arrange(d, p, tmp_path, {"web1": "c" * 64, "web2": "c" * 64})
    assert all(p[n]["prepare"].get("assets").run == shared.receive for n in ("web1", "web2"))


def test_nothing_to_build(d, tmp_path):
    assert assets_build.arrange(d, plans(), tmp_path) is None
