"""Integration fixtures: one sandbox (web1, web2, db + apt proxy + moto) per test session.

Booted once and shared by every integration test; torn down at the end of the session.
Needs root (network namespaces, systemd-nspawn), as CI runs it.
"""

from __future__ import annotations

import os
import shutil

import pytest

from railsfab import inventory
from railsfab.report import Reporter
from railsfab.sandbox.core import Sandbox
from tests.conftest import ROOT, sandbox_hosts_yaml

HOSTS = {"web1": (11, ["web", "migrate"]), "web2": (12, ["web"]), "db": (20, ["db"])}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stage_file(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("integration tests need root: they boot systemd-nspawn hosts")
    folder = tmp_path_factory.mktemp("itest")
    # A copy of the sample app that tests may edit (a changed view, a broken stylesheet).
    app = folder / "app"
    shutil.copytree(ROOT / "examples/sample_app", app,
                    ignore=shutil.ignore_patterns("Gemfile.lock", "*.log", "cache"))
    return sandbox_hosts_yaml(folder, stage="itest", bridge="rfit0", net=232, hosts=HOSTS,
                              source=app)


@pytest.fixture(scope="session")
def inv(stage_file):
    return inventory.load(stage_file)


@pytest.fixture(scope="session")
def sandbox(inv):
    sbx = Sandbox(inv, Reporter())
    try:
        sbx.up()
        yield sbx
    finally:
        sbx.down()


@pytest.fixture(scope="session")
def fresh_deploy(sandbox, stage_file):
    """The one fresh `fab deploy` of the session (the slow part: packages); the tests that
    read its output or need a deployed app share it, whatever order they run in."""
    from tests.conftest import run_fab

    r = run_fab(stage_file, "deploy")
    assert r.returncode == 0, r.stdout + r.stderr
    return r
