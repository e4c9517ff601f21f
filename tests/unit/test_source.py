"""What ships from the app source: git's tracked files at a ref, or a folder with its
.gitignore rules; secrets never, and the output can name what was left out."""

from __future__ import annotations

import io
import subprocess
import tarfile

import pytest

from railsfab.errors import ConfigError
from railsfab.source import Source


def app(folder, files: dict[str, str]):
    base = {"config.ru": "run Rails.application\n", "Gemfile": 'gem "rails"\n'}
    for rel, text in {**base, **files}.items():
        p = folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return folder


def git(folder, *args):
    subprocess.run(["git", "-C", str(folder), "-c", "user.email=t@example.com",
                    "-c", "user.name=t", *args], check=True, capture_output=True)


def shipped(src: Source) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(src.archive())) as tar:
        return sorted(tar.getnames())


SECRETS = {".env": "SECRET_KEY_BASE=x\n", ".env.production": "X=1\n", ".envrc": "X=1\n",
           ".env-production": "X=1\n", ".env_local": "X=1\n", "sub/.env.test": "X=1\n",
           "config/master.key": "abc\n", "config/credentials/production.key": "def\n"}


def test_a_plain_folder_ships_what_gitignore_does_not_exclude_and_never_secrets(tmp_path):
    src = Source(app(tmp_path, {
        ".gitignore": "/coverage.txt\n*.sqlite3\n/public/uploads/\n!keep.sqlite3\n",
        "app/models/book.rb": "class Book; end\n", "coverage.txt": "x", "db/dev.sqlite3": "x",
        "db/keep.sqlite3": "x", "public/uploads/a.png": "x", "public/robots.txt": "x",
        "lib/.gitignore": "generated.rb\n", "lib/generated.rb": "x", "lib/tool.rb": "x",
        "config/credentials.yml.enc": "enc", **SECRETS}))
    assert shipped(src) == [".gitignore", "Gemfile", "app/models/book.rb", "config.ru",
                            "config/credentials.yml.enc", "db/keep.sqlite3", "lib/.gitignore",
                            "lib/tool.rb", "public/robots.txt"]
    assert sorted(src.left_out) == sorted(SECRETS)
    assert src.origin == "folder (.gitignore applied)"


def test_a_git_checkout_ships_the_files_tracked_at_head_and_names_uncommitted_changes(tmp_path):
    repo = tmp_path / "repo"
    folder = app(repo / "shop", {"app/views/index.erb": "one\n", "README.md": "r\n"})
    (repo / "other.txt").write_text("not the app\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "one")
    (folder / "app/views/index.erb").write_text("two\n")  # changed, not committed
    (folder / "untracked.rb").write_text("x\n")
    for rel, text in SECRETS.items():  # even if someone force-adds them
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    git(repo, "add", "-f", "shop/config/master.key")
    git(repo, "commit", "-qm", "oops")
    src = Source(folder)
    assert shipped(src) == ["Gemfile", "README.md", "app/views/index.erb", "config.ru"]
    assert src.text("app/views/index.erb") == "one\n"  # committed content, not the working tree
    assert src.left_out == ["config/master.key"]
    assert src.uncommitted == ["app/views/index.erb"]
    assert src.origin.startswith("git HEAD (")


def test_app_ref_picks_the_commit_that_ships(tmp_path):
    folder = app(tmp_path, {"VERSION": "1\n"})
    git(folder, "init", "-q")
    git(folder, "add", "-A")
    git(folder, "commit", "-qm", "v1")
    git(folder, "tag", "v1")
    (folder / "VERSION").write_text("2\n")
    git(folder, "commit", "-qam", "v2")
    assert Source(folder, ref="v1").text("VERSION") == "1\n"
    assert Source(folder).text("VERSION") == "2\n"
    with pytest.raises(ConfigError, match="app.ref"):
        _ = Source(folder, ref="no-such-tag").files


def test_the_same_files_make_the_same_digests_and_archive(tmp_path):
    a = Source(app(tmp_path / "a", {"app/x.rb": "x\n"}))
    b = Source(app(tmp_path / "b", {"app/x.rb": "x\n"}))
    assert (a.digest, a.gems_digest) == (b.digest, b.gems_digest)
    c = Source(app(tmp_path / "c", {"app/x.rb": "y\n"}))
    assert c.digest != a.digest and c.gems_digest == a.gems_digest


def test_an_asset_pipeline_is_recognised_from_the_gems_or_sprockets_manifest(tmp_path):
    assert not Source(app(tmp_path / "none", {"Gemfile": 'gem "rails", "~> 7.2"\n'})
                      ).asset_pipeline
    assert Source(app(tmp_path / "propshaft", {"Gemfile": 'gem "rails"\ngem "propshaft"\n'})
                  ).asset_pipeline
    assert Source(app(tmp_path / "rails6", {"app/assets/config/manifest.js": "//= x\n"})
                  ).asset_pipeline


def test_the_release_archive_carries_what_railsfab_adds_in_place_of_the_apps(tmp_path):
    src = Source(app(tmp_path, {"config/storage.yml": "local:\n  service: Disk\n"}))
    extra = {"Gemfile.railsfab": "eval_gemfile 'Gemfile'\n",
             "config/storage.yml": "amazon:\n  service: S3\n"}
    with tarfile.open(fileobj=io.BytesIO(src.archive(extra))) as tar:
        names = tar.getnames()
        assert names.count("config/storage.yml") == 1
        assert tar.extractfile("config/storage.yml").read() == b"amazon:\n  service: S3\n"
        assert "Gemfile.railsfab" in names
