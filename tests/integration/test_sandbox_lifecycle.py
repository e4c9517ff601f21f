"""`fab sandbox.up/down` as a user runs them: idempotent, recovers leftovers, leaves nothing."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from railsfab import inventory
from railsfab.local import pid_alive
from railsfab.report import Reporter
from railsfab.sandbox.core import Sandbox
from tests.conftest import run_fab, sandbox_hosts_yaml

STAGE = "ilife"


@pytest.fixture
def stage_file(tmp_path):
    if os.geteuid() != 0:
        pytest.fail("needs root")
    # No db host: this test is about the sandbox's own lifecycle, not MariaDB.
    path = sandbox_hosts_yaml(tmp_path, stage=STAGE, bridge="rflife0", net=233,
                              hosts={"web1": (11, ["web"]), "web2": (12, ["web"])})
    yield path
    Sandbox(inventory.load(path), Reporter(quiet=True)).down()


def fab(stage_file: Path, *args: str) -> subprocess.CompletedProcess:
    return run_fab(stage_file, *args, timeout=900)


def started_pids(sbx: Sandbox) -> list[int]:
    pidfiles = [m.pidfile for m in sbx.machines.values()] + [
        sbx.proxy.pidfile, sbx.debs.pidfile, sbx.aws.pidfile]
    return [p for p in (pf.read() for pf in pidfiles) if p]


def test_up_is_idempotent_recovers_from_a_killed_run_and_down_leaves_nothing(stage_file):
    first = fab(stage_file, "sandbox.up")
    assert first.returncode == 0, first.stdout + first.stderr

    again = fab(stage_file, "sandbox.up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "nothing changed" in again.stdout
    assert " changed " not in again.stdout

    status = fab(stage_file, "sandbox.status")
    assert status.returncode == 0
    for line in ("web1", "web2", "aws endpoint", "apt proxy", "egress proxy"):
        row = next(ln for ln in status.stdout.splitlines() if f" {line} " in ln)
        assert "running" in row

    # Simulate a run killed hard: web2's container dies, its netns/veth and files remain.
    sbx = Sandbox(inventory.load(stage_file), Reporter(quiet=True))
    web2 = sbx.machines["web2"]
    os.kill(web2.pidfile.read(), signal.SIGKILL)
    assert Path(f"/run/netns/{web2.netns}").exists()
    recovered = fab(stage_file, "sandbox.up")
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert any("web2" in ln and "changed" in ln and "boot" in ln
               for ln in recovered.stdout.splitlines())
    check = subprocess.run(["ssh", "-F", str(sbx.ssh_config), "-o", "BatchMode=yes", "web2",
                            "systemctl is-system-running"], capture_output=True, text=True)
    assert check.stdout.strip() == "running"

    pids = started_pids(sbx)
    assert len(pids) == 5
    down = fab(stage_file, "sandbox.down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert [p for p in pids if pid_alive(p)] == []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "rf-rflife0-" not in netns
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "rflife0" not in links
    assert not (sbx.dir / "hosts").exists()
    from railsfab.sandbox.image import image_path

    assert image_path().is_dir()  # the cached base image stays
