"""Gems the way most apps ship them: the sample app's committed Gemfile.lock installed by
Bundler in deployment mode into shared/bundle, through the sandbox's gem mirror (Debian's
gem packages repacked; rubygems.org is out of reach here). Its own sandbox (bridge rfbd0,
10.237.0.0/16), booted for this file."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT, booted, run_fab, sandbox_hosts_yaml
from tests.integration.test_deploy import current_release, get, ssh
from tests.load import Load

HOSTS = {"web1": (11, ["web", "migrate"]), "web2": (12, ["web"]), "db": (20, ["db"])}
WEB = ("web1", "web2")
BUNDLE = "/srv/sample/shared/bundle/ruby/3.1.0"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bundler")
    app = folder / "app"
    shutil.copytree(ROOT / "examples/sample_app", app,
                    ignore=shutil.ignore_patterns("*.log", "cache"))
    return app


@pytest.fixture(scope="module")
def stage(app):
    if os.geteuid() != 0:
        pytest.fail("integration tests need root: they boot systemd-nspawn hosts")
    path = sandbox_hosts_yaml(app.parent, stage="ibund", bridge="rfbd0", net=237, hosts=HOSTS,
                              source=app, like="bundler")
    with booted(path) as sbx:
        yield path, sbx


@pytest.fixture(scope="module")
def deployed(stage):
    path, _ = stage
    provision = run_fab(path, "aws.provision")  # the bucket the app's uploads go to
    assert provision.returncode == 0, provision.stdout + provision.stderr
    r = run_fab(path, "deploy")
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def test_the_lockfile_is_installed_into_shared_bundle_through_the_mirror(deployed, stage):
    _, sbx = stage
    assert re.search(r"web1\s+changed\s+bundle\s.*installed \d\d gems; \d+ already in "
                     r"shared/bundle", deployed.stdout)
    for host in WEB:
        gems = ssh(sbx, host, f"sudo ls {BUNDLE}/gems")
        assert re.search(r"^rails-6\.1\.7", gems, re.M) and "mysql2-" in gems
        release = current_release(sbx, host)
        assert ssh(sbx, host, f"sudo find /srv/sample/releases/{release} -name '*.gem' "
                              "-o -name vendor -type d") == ""  # nothing in the release
        status, _, body = get(f"10.237.1.{11 if host == 'web1' else 12}", "/")
        assert status == 200 and "railsfab sample app" in body


def test_a_second_deploy_reuses_the_gems(deployed, stage, app):
    path, _ = stage
    view = app / "app/views/photos/index.html.erb"
    view.write_text(view.read_text() + "\n<p>bundler two</p>\n")
    r = run_fab(path, "deploy")
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"web1\s+ok\s+bundle\s.*Gemfile.lock unchanged", r.stdout)
    assert "0 changed" in run_fab(path, "deploy").stdout


def test_a_changed_lockfile_installs_only_the_new_gem_under_load(deployed, stage, app):
    path, sbx = stage
    gemfile, lock = app / "Gemfile", app / "Gemfile.lock"
    mirror = json.loads((mirror_folder(sbx) / "index.json").read_text())
    cors = next(g for g in mirror if g["name"] == "rack-cors")
    gemfile.write_text(gemfile.read_text() + 'gem "rack-cors"\n')
    text = lock.read_text()
    deps = "".join(f"      {n} ({r})\n" for n, r in cors["dependencies"])
    text = re.sub(r"(^    rack-test )", f"    rack-cors ({cors['version']})\n{deps}\\1", text,
                  count=1, flags=re.M)
    text = text.replace("\nDEPENDENCIES\n", "\nDEPENDENCIES\n  rack-cors\n")
    lock.write_text(text)
    with Load(["10.237.1.11", "10.237.1.12"], connections=50, max_seconds=300) as load:
        r = run_fab(path, "deploy")
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(rf"bundle\s.*installed rack-cors {cors['version']}; \d+ already in "
                     r"shared/bundle", r.stdout)
    assert load.result.failed == 0, load.result.errors
    assert load.result.ok > 100


def test_a_lockfile_pinning_a_gem_the_mirror_lacks_fails_before_any_switch(deployed, stage,
                                                                         app):
    path, sbx = stage
    lock = app / "Gemfile.lock"
    good = lock.read_text()
    before = {h: current_release(sbx, h) for h in WEB}
    lock.write_text(re.sub(r"^    rack-cors \([^)]+\)$", "    rack-cors (9.9.9)",
                           good, count=1, flags=re.M))
    try:
        r = run_fab(path, "deploy")
    finally:
        lock.write_text(good)
    assert r.returncode != 0
    assert "the Gemfile.lock pins rack-cors 9.9.9, which http://10.237.0.1:9292 does not " \
           "have" in r.stdout
    assert "step bundle" in r.stdout
    assert {h: current_release(sbx, h) for h in WEB} == before
    assert all(get(a, "/")[0] == 200 for a in ("10.237.1.11", "10.237.1.12"))


def test_check_is_green(deployed, stage):
    path, _ = stage
    assert run_fab(path, "deploy").returncode == 0
    r = run_fab(path, "check")
    assert r.returncode == 0, r.stdout


def mirror_folder(sbx) -> Path:
    """The mirror build the sandbox serves (its index.json lists every gem)."""
    return Path((sbx.dir / "run" / "gems.folder").read_text())
