"""railsfab.assets_build: one host precompiles, the others unpack its checked archive."""

from __future__ import annotations

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
    out, files = assets_build.repack(data, "web1")
    assert files == 2
    with tarfile.open(fileobj=io.BytesIO(out)) as t:
        assert {m.name: m.mode for m in t} == {"assets": 0o755, "assets/app-abc.css": 0o644,
                                                "assets/.sprockets-manifest-1.json": 0o644}


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


def desired():
    paths = SimpleNamespace(release=lambda rel: f"/srv/sample/releases/{rel}")
    return SimpleNamespace(digests=SimpleNamespace(assets="abc123"), paths=paths,
                           release="20261207", app=SimpleNamespace(deploy_user="deploy"))


def plans(*needing: str, reusing: tuple[str, ...] = ()) -> dict[str, dict]:
    out = {}
    for n in (*needing, *reusing):
        o = (Change("RAILS_ENV=production assets:precompile", disturbs=False,
                    scripts=(Script("precompile"),)) if n in needing
             else NoChange("asset inputs unchanged"))
        out[n] = {"prepare": Plan([Planned("release", Change("create", disturbs=False)),
                                   Planned("assets", o)])}
    return out


def test_the_first_host_that_needs_it_builds_the_others_receive(tmp_path):
    p = plans("web1", "web2", "web3", reusing=("web4",))
    shared = assets_build.arrange(desired(), p, tmp_path)
    assert shared.builder == "web1" and not shared.ready.is_set()
    built = p["web1"]["prepare"].get("assets")
    assert built.scripts == (Script("precompile"),) and built.run == shared.built
    for n in ("web2", "web3"):
        o = p[n]["prepare"].get("assets")
        assert o.run == shared.receive and not o.scripts
        assert "from web1's build (no precompile here)" in o.what
    assert isinstance(p["web4"]["prepare"].get("assets"), NoChange)


def test_a_builder_that_fails_before_building_frees_the_others(tmp_path):
    shared = assets_build.arrange(desired(), plans("web1", "web2"), tmp_path)
    shared.settle("web2")
    assert not shared.ready.is_set()
    shared.settle("web1")
    assert shared.ready.is_set() and "web1" in shared.error
    with pytest.raises(Exception, match="web1, which builds"):
        shared.receive(SimpleNamespace(name="web2", conn=None))


def test_assets_built_before_are_shipped_and_built_nowhere(tmp_path):
    out, _ = assets_build.repack(tgz([("assets/a.css", b"a", tarfile.REGTYPE)]), "web1")
    (tmp_path / "abc123.tar.gz").write_bytes(out)
    p = plans("web1", "web2")
    shared = assets_build.arrange(desired(), p, tmp_path)
    assert shared.builder is None and shared.ready.is_set() and shared.files == 1
    assert all(p[n]["prepare"].get("assets").run == shared.receive for n in ("web1", "web2"))


def test_nothing_to_build():
    assert assets_build.arrange(desired(), plans(reusing=("web1",)), None) is None
