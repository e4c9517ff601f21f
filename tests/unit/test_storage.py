"""The app's own config/storage.yml wins; railsfab renders one only for an app without an S3
service, and says so (the dry run shows the diff against the app's file)."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from railsfab import appenv, inventory
from railsfab.deploy import plan
from railsfab.ops import desired
from railsfab.ops.base import Change
from tests.unit.test_plans import deployed, edit, new_source

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_STORAGE = (ROOT / "examples/sample_app/config/storage.yml").read_text()


def test_the_s3_service_is_found_in_an_erb_storage_yml():
    assert appenv.s3_service(SAMPLE_STORAGE) == "amazon"
    assert appenv.s3_service("local:\n  service: Disk\n") is None
    assert appenv.s3_service('s3_main: # uploads\n  service: "S3"\n  bucket: x\n') == "s3_main"
    assert appenv.s3_service(None) is None


def build(tmp_path, monkeypatch, storage: str | None) -> desired.Desired:
    app = tmp_path / "app"
    shutil.copytree(ROOT / "examples/sample_app", app)
    if storage is None:
        (app / "config/storage.yml").unlink()
    else:
        (app / "config/storage.yml").write_text(storage)
    monkeypatch.setenv("SECRET_KEY_BASE", "k" * 64)
    doc = {"default_stage": "prod", "stages": {"prod": {
        "hosts": [{"name": "web1", "address": "198.51.100.7"}],
        "app": {"name": "shop", "source": str(app), "deploy_to": "/srv/shop"},
        "aws": {"region": "ap-northeast-1", "bucket": "shop-up"}}}}
    (tmp_path / "hosts.yaml").write_text(yaml.safe_dump(doc))
    return desired.build(inventory.load(tmp_path / "hosts.yaml"))


def test_an_app_with_its_own_s3_service_keeps_its_file_and_gets_only_the_env(tmp_path,
                                                                             monkeypatch):
    d = build(tmp_path, monkeypatch, SAMPLE_STORAGE.replace("amazon:", "uploads:"))
    assert d.storage_yml is None
    assert "own config/storage.yml is kept (S3 service 'uploads')" in d.storage_note
    assert "ACTIVE_STORAGE_SERVICE='uploads'" in d.env_text
    assert "S3_BUCKET='shop-up'" in d.env_text


def test_an_app_without_one_gets_railsfabs_and_the_output_and_dry_run_say_so(tmp_path,
                                                                            monkeypatch):
    d = build(tmp_path, monkeypatch, "local:\n  service: Disk\n  root: storage\n")
    assert "bucket: shop-up" in d.storage_yml and "rendered by railsfab" in d.storage_note
    step = plan(edit(deployed, new_source)(d), d)["prepare"].get("release")
    assert isinstance(step, Change) and "config/storage.yml rendered by railsfab" in step.what
    assert step.diff.path == "config/storage.yml"
    assert step.diff.old.startswith("local:") and "service: S3" in step.diff.new
