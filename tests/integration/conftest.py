"""Integration fixtures: one sandbox (web1, web2, db + apt proxy + moto) per test session,
and named states it can be brought to, whatever ran before.

The sandbox is booted once and shared by every integration test; torn down at the end of the
session. A test module asks for the state it needs (`stages.unicorn(alb=True)`,
`stages.puma(notify=False)`...): the fixture deploys that shape from the pristine sample app
(a deploy is idempotent, so a state already reached costs a no-op deploy) and hands back the
stage file. So each file passes alone and in any order (RAILSFAB_TEST_ORDER=reverse runs the
files in reverse order). Needs root (network namespaces, systemd-nspawn), as CI runs it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from railsfab import inventory
from tests.conftest import ROOT, booted, run_fab, sandbox_hosts_yaml

HOSTS = {"web1": (11, ["web", "migrate"]), "web2": (12, ["web"]), "db": (20, ["db"])}
SAMPLE = ROOT / "examples/sample_app"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
    if os.environ.get("RAILSFAB_TEST_ORDER") == "reverse":
        files = list(dict.fromkeys(item.fspath for item in items))
        rank = {f: -i for i, f in enumerate(files)}
        items.sort(key=lambda item: rank[item.fspath])  # stable: order inside a file kept


def copy_app(dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(SAMPLE, dest, ignore=shutil.ignore_patterns("Gemfile.lock", "*.log", "cache"))
    return dest


@pytest.fixture(scope="session")
def stage_file(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("integration tests need root: they boot systemd-nspawn hosts")
    folder = tmp_path_factory.mktemp("itest")
    # A copy of the sample app that tests may edit (a changed view, a broken stylesheet).
    app = copy_app(folder / "app")
    # RAILSFAB_TEST_NET moves the session's sandbox to 10.<net>.0.0/16 (bridge rfit<net>), so
    # two checkouts can run their integration tests on one machine at once.
    net = int(os.environ.get("RAILSFAB_TEST_NET", "232"))
    bridge = "rfit0" if net == 232 else f"rfit{net}"
    path = sandbox_hosts_yaml(folder, stage="itest", bridge=bridge, net=net, hosts=HOSTS,
                              source=app)
    # The canary bakes briefly here (most deploys run without traffic, and each would wait
    # the whole bake); test_zero_downtime's canary tests bake as long as the default.
    doc = yaml.safe_load(path.read_text())
    doc["stages"]["itest"]["rollout"] = {"bake": 2}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def inv(stage_file):
    return inventory.load(stage_file)


@pytest.fixture(scope="session")
def sandbox(stage_file):
    with booted(stage_file) as sbx:
        yield sbx


@pytest.fixture(scope="session")
def fresh_deploy(sandbox, stage_file):
    """The one fresh `fab deploy` of the session (the slow part: packages), on hosts nothing
    was deployed to; its output is the fresh deploy's, whichever test asks first. The stage
    names a stack, so it is provisioned first (a deploy refuses a stage whose stack is not
    there)."""
    p = run_fab(stage_file, "aws.provision")
    assert p.returncode == 0, p.stdout + p.stderr
    r = run_fab(stage_file, "deploy")
    assert r.returncode == 0, r.stdout + r.stderr
    # what only this moment shows (later tests precompile on a host, a fault's fix does):
    # which hosts ran a precompile (sprockets' cache is where it leaves its work)
    r.precompiled = [h for h in ("web1", "web2") if subprocess.run(
        ["ssh", "-F", str(sandbox.ssh_config), "-o", "BatchMode=yes", h,
         "sudo find /srv/sample/shared/tmp/cache/assets -type f | head -1"],
        capture_output=True, text=True, timeout=60).stdout.strip()]
    return r


class Stages:
    """The shapes the session's sandbox can be put in. Every state has the stack provisioned
    (the S3 bucket exists); `alb=True` states roll through its target group."""

    def __init__(self, base: Path, app: Path) -> None:
        self.base = base
        self.app = app
        self.folder = base.parent

    def variant(self, name: str, change) -> Path:
        """A copy of the session's hosts.yaml beside it (same sandbox, keys and state)."""
        doc = yaml.safe_load(self.base.read_text())
        change(doc["stages"][doc["default_stage"]])
        path = self.folder / name
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def pristine(self) -> Path:
        """The app source as shipped: edits left by other tests are gone."""
        return copy_app(self.app)

    def reach(self, path: Path) -> Path:
        r = run_fab(path, "deploy")
        assert r.returncode == 0, r.stdout + r.stderr
        return path

    def _app(self, alb: bool, **app) -> Path:
        def change(st):
            st["app"].update(app)
            if not alb:
                st["aws"].pop("stack_name")
        name = "-".join(f"{k}-{v}" for k, v in sorted(app.items())) or "unicorn"
        return self.variant(f"hosts-{name}{'-alb' if alb else ''}.yaml", change)

    def unicorn(self, *, alb: bool = False) -> Path:
        self.pristine()
        return self.reach(self.base if alb else self._app(False))

    def puma(self, *, notify: bool = True, alb: bool = False) -> Path:
        self.pristine()
        if not notify:
            gemfile = self.app / "Gemfile"
            gemfile.write_text(re.sub(r'^gem "sd_notify".*\n', "", gemfile.read_text(), flags=re.M))
        return self.reach(self._app(alb, app_server="puma"))

    def puma_file(self, *, alb: bool = False) -> Path:
        """The puma stage's file, without deploying it (a test deploys it under load)."""
        return self._app(alb, app_server="puma")

    def unicorn_file(self, *, alb: bool = False) -> Path:
        return self.base if alb else self._app(False)


@pytest.fixture(scope="session")
def stages(fresh_deploy, stage_file):
    return Stages(stage_file, stage_file.parent / "app")


@pytest.fixture(scope="module")
def provisioned(stages):
    """The stack (provisioned for every state), hosts on unicorn registered through it."""
    return stages.unicorn(alb=True)


@pytest.fixture(scope="module")
def clients(inv):
    """boto3 clients of the stage's AWS endpoint (the sandbox's moto server)."""
    from railsfab import aws

    return aws.clients(inv)
