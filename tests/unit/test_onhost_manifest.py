"""The probe reports the current release's precompiled asset manifest (name, sha256, digested
file count) so that fab check can compare the web hosts' assets
(railsfab/onhost/manifest.py `asset_manifest`, also read with the deploy's facts; run here on
a temp folder)."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from railsfab.onhost import manifest as check_app

SPROCKETS = {"files": {"application-ab12.css": {"logical_path": "application.css"},
                       "application-cd34.js": {"logical_path": "application.js"}},
             "assets": {"application.css": "application-ab12.css",
                        "application.js": "application-cd34.js"}}


def deployed(tmp_path, manifests: dict[str, object], rid="20261206110556"):
    """A deploy_to with one release, `current` pointing to it, its public/assets holding
    `manifests` ({name: JSON doc or raw bytes})."""
    root = tmp_path.resolve()  # the probe compares real paths
    release = root / "releases" / rid
    (release / "public/assets").mkdir(parents=True)
    for name, doc in manifests.items():
        data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        (release / "public/assets" / name).write_bytes(data)
    (root / "current").symlink_to(release)
    return str(root / "current"), str(root / "releases"), release


def test_a_sprockets_manifest_with_its_sha256_and_digested_files(tmp_path):
    current, releases, release = deployed(tmp_path, {".sprockets-manifest-0a1b.json": SPROCKETS})
    data = (release / "public/assets/.sprockets-manifest-0a1b.json").read_bytes()
    assert check_app.asset_manifest(current, releases) == {
        "name": "public/assets/.sprockets-manifest-0a1b.json",
        "sha256": hashlib.sha256(data).hexdigest(), "files": 2}


@pytest.mark.parametrize("name, doc, files", [
    (".manifest.json", {"application.css": "application-ab12.css", "x.js": "x-cd34.js",
                        "y.png": {"digested_path": "y-ef56.png"}}, 3),  # Propshaft
    ("manifest-0a1b.json", SPROCKETS, 2),  # Sprockets 2's name
    (".manifest.json", b"not json", None),
])
def test_propshaft_and_older_sprockets_manifests(tmp_path, name, doc, files):
    current, releases, _ = deployed(tmp_path, {name: doc})
    found = check_app.asset_manifest(current, releases)
    assert (found["name"], found["files"]) == (f"public/assets/{name}", files)
    assert len(found["sha256"]) == 64


def test_of_several_sprockets_manifests_the_first_by_name_as_sprockets_takes(tmp_path):
    current, releases, _ = deployed(tmp_path, {".sprockets-manifest-ff.json": {"files": {}},
                                               ".sprockets-manifest-0a.json": SPROCKETS})
    assert check_app.asset_manifest(current, releases)["name"] == \
        "public/assets/.sprockets-manifest-0a.json"


def test_no_manifest_no_assets_no_release_is_none(tmp_path):
    current, releases, release = deployed(tmp_path, {"application-ab12.css": b""})
    assert check_app.asset_manifest(current, releases) is None
    (release / "public/assets/application-ab12.css").unlink()
    (release / "public/assets").rmdir()
    assert check_app.asset_manifest(current, releases) is None
    os.unlink(current)
    assert check_app.asset_manifest(current, releases) is None


def test_a_manifest_that_is_a_link_is_not_read(tmp_path):
    """The release is the deploy user's: a link planted as the manifest (to root's files)
    gives neither content nor a digest of it."""
    current, releases, release = deployed(tmp_path, {})
    secret = tmp_path / "secret"
    secret.write_text('{"files": {"root-only": 1}}')
    (release / "public/assets/.sprockets-manifest-0a1b.json").symlink_to(secret)
    found = check_app.asset_manifest(current, releases)
    assert found["sha256"] is None and found["files"] is None and found["error"]


def test_public_assets_a_link_out_of_the_release_is_not_followed(tmp_path):
    current, releases, release = deployed(tmp_path, {})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".sprockets-manifest-0a1b.json").write_text(json.dumps(SPROCKETS))
    (release / "public/assets").rmdir()
    (release / "public/assets").symlink_to(elsewhere)
    assert check_app.asset_manifest(current, releases) is None


def test_current_pointing_out_of_the_releases_is_not_read(tmp_path):
    current, releases, _ = deployed(tmp_path, {".sprockets-manifest-0a1b.json": SPROCKETS})
    outside = tmp_path / "other/public/assets"
    outside.mkdir(parents=True)
    (outside / ".sprockets-manifest-0a1b.json").write_text(json.dumps(SPROCKETS))
    os.unlink(current)
    os.symlink(tmp_path / "other", current)
    found = check_app.asset_manifest(current, releases)
    assert found["sha256"] is None and "not a release in" in found["error"]


def test_a_manifest_over_the_limit_is_not_hashed(tmp_path, monkeypatch):
    monkeypatch.setattr(check_app, "MANIFEST_LIMIT", 8)
    current, releases, _ = deployed(tmp_path, {".sprockets-manifest-0a1b.json": SPROCKETS})
    found = check_app.asset_manifest(current, releases)
    assert found["sha256"] is None and "larger than" in found["error"]


def test_release_state_carries_the_manifest(tmp_path):
    current, releases, _ = deployed(tmp_path, {".sprockets-manifest-0a1b.json": SPROCKETS})
    from railsfab.onhost import check_app as probe

    state = probe.release_state({
        "current": current, "releases": releases, "app_user": "root", "linked_dirs": [],
        "shared": str(tmp_path / "shared"), "app_writes": [],
        "unit_file": str(tmp_path / "x.service")})
    assert state["manifest"]["files"] == 2
