"""A unicorn handover stopped halfway (fab killed while the new master boots, its SSH
session gone, a USR2 sent by hand and left) is finished or undone by the next command, under
load, without `--hard`: exactly one master is left, systemd's MainPID is it, no request
fails. `fab check` names the half-done state with that command as its fix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, run_fab
from tests.integration.test_deploy import get, master_pid, ssh
from tests.integration.test_zero_downtime import edit_view, masters, systemd_main_pid, under_load

WEB = ("web1", "web2")
PID = "/srv/sample/shared/tmp/pids/unicorn.pid"


@pytest.fixture(scope="module")
def stage(stages):
    return stages.unicorn(alb=True)


@pytest.fixture(scope="module")
def app(stage, inv):
    return inv.resolve(inv.stage.app.source)


@pytest.fixture(scope="module")
def addresses(inv):
    return [h.address for h in inv.hosts(role="web")]


def wait_for(what: str, probe, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def workers_of(sandbox, host: str, pid: str) -> int:
    return int(ssh(sandbox, host, f"ps --ppid {pid} -o cmd= | grep -c 'unicorn.*worker' || true"))


def half_done(sandbox, host: str, *, wait: bool = True) -> tuple[str, str | None]:
    """A USR2 sent by hand as the app user and left: the old master keeps `.oldbin`; with
    `wait`, until the new master serves with all its workers beside it."""
    old = master_pid(sandbox, host)
    ssh(sandbox, host, f"sudo -u sample kill -USR2 {old}")
    if not wait:
        return old, None

    def both_up():
        pids = ssh(sandbox, host, f"sudo cat {PID} {PID}.oldbin 2>/dev/null || true").split()
        if len(pids) == 2 and pids[1] == old and pids[0] != old \
                and workers_of(sandbox, host, pids[0]) >= 2 \
                and len(masters(sandbox, host)) == 2:
            return pids[0]
        return None
    return old, wait_for(f"a second master on {host}", both_up)


def assert_one_master(sandbox, host: str) -> str:
    pid = master_pid(sandbox, host)
    assert masters(sandbox, host) == [pid]
    assert systemd_main_pid(sandbox, host) == pid
    assert ssh(sandbox, host, f"sudo test -e {PID}.oldbin && echo left || echo gone") == "gone"
    assert workers_of(sandbox, host, pid) == 2
    return pid


def test_check_names_a_half_done_handover_and_restart_app_finishes_it(sandbox, stage, addresses):
    old, new = half_done(sandbox, "web2")
    r = run_fab(stage, "check", "--json")
    assert r.returncode != 0
    broken = next(v for v in json.loads(r.stdout)["web2"] if v["role"] == "cause")
    assert broken["layer"] == "app server", broken
    assert "interrupted zero-downtime handover" in broken["detail"], broken
    assert f"master {old} " in broken["detail"] and f"master {new} " in broken["detail"]
    assert broken["fix"].startswith("fab restart-app (or fab deploy) finishes it")
    assert "--hard" not in r.stdout
    r, load = under_load(addresses, lambda: run_fab(stage, "restart-app"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"finished an interrupted handover (old master {old} quit, {new} kept)" in r.stdout
    assert load.result.failed == 0, load.result.errors
    for h in WEB:
        assert_one_master(sandbox, h)
    assert master_pid(sandbox, "web2") not in (old, new)  # and then restarted as asked
    assert run_fab(stage, "check").returncode == 0


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGINT, signal.SIGKILL],
                         ids=["SIGHUP", "SIGINT", "SIGKILL-cuts-ssh"])
def test_restart_app_killed_while_the_new_master_boots_then_run_again(sandbox, stage, addresses,
                                                                       sig):
    before = master_pid(sandbox, "web1")
    env = {**os.environ, "RAILSFAB_HOSTS": str(stage), "COLUMNS": "200"}

    def interrupted_then_again():
        proc = subprocess.Popen([sys.executable, "-m", "fabric", "-r", str(ROOT), "restart-app",
                                 "--only", "web1"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env)
        try:  # the new master is booting once the old one has renamed its pid file
            wait_for("the USR2 on web1", lambda: ssh(
                sandbox, "web1", f"sudo test -e {PID}.oldbin && echo yes || true"), 60)
            proc.send_signal(sig)
            proc.wait(30)
        finally:
            proc.kill()
            proc.wait()
        return run_fab(stage, "restart-app")

    r, load = under_load(addresses, interrupted_then_again)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "--hard" not in r.stdout
    assert load.result.failed == 0, load.result.errors
    for h in WEB:
        assert_one_master(sandbox, h)
    assert master_pid(sandbox, "web1") != before


def test_deploy_of_a_changed_release_after_half_done_handovers(app, sandbox, stage, addresses):
    """web1 with its new master up beside the old one, web2 with its new master still
    booting: the deploy finishes both and hands over to the new release."""
    half_done(sandbox, "web1")
    half_done(sandbox, "web2", wait=False)
    edit_view(app, "after a half-done handover")
    r, load = under_load(addresses, lambda: run_fab(stage, "deploy"),
                         marker="after a half-done handover")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("interrupted handover") == 2, r.stdout
    assert load.result.failed == 0, load.result.errors
    for h, address in zip(WEB, addresses, strict=True):
        assert_one_master(sandbox, h)
        assert "after a half-done handover" in get(address, "/")[2]


def test_a_half_done_handover_into_another_release_is_undone(sandbox, stage, addresses):
    """The new master runs a release `current` no longer points to: it is told to quit, the
    old master keeps serving, then the requested handover runs from `current`."""
    cur = ssh(sandbox, "web1", "readlink /srv/sample/current")
    other = "/srv/sample/releases/20000101000000"  # a copy: another directory to run from
    link = "sudo ln -sfn {} /srv/sample/current.tmp && sudo mv -T /srv/sample/current.tmp " \
           "/srv/sample/current"
    owner = ssh(sandbox, "web1", "stat -c %U:%G /srv/sample/current")
    ssh(sandbox, "web1", f"sudo cp -a {cur} {other}")
    try:
        ssh(sandbox, "web1", link.format(other))
        old, new = half_done(sandbox, "web1")
        assert ssh(sandbox, "web1", f"sudo readlink /proc/{new}/cwd") == other
    finally:
        ssh(sandbox, "web1", link.format(cur) + f" && sudo chown -h {owner} /srv/sample/current")
    try:
        r, load = under_load(addresses, lambda: run_fab(stage, "restart-app", "--only", "web1"))
    finally:
        ssh(sandbox, "web1", f"sudo rm -rf {other}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"undid an interrupted handover (new master {new} quit, {old} kept)" in r.stdout
    assert load.result.failed == 0, load.result.errors
    pid = assert_one_master(sandbox, "web1")
    assert ssh(sandbox, "web1", f"sudo readlink /proc/{pid}/cwd") == \
        ssh(sandbox, "web1", "readlink -f /srv/sample/current")


@pytest.mark.parametrize("flags, sig", [
    ((), signal.SIGHUP), ((), signal.SIGKILL), (("--hot",), signal.SIGHUP)],
    ids=["phased-SIGHUP", "phased-SIGKILL-cuts-ssh", "hot-SIGHUP"])
def test_puma_restart_killed_midway_leaves_nothing_for_the_next_one(stages, sandbox, inv,
                                                                    flags, sig):
    """puma finishes a signalled restart by itself under the same PID: the next command
    waits for it to end (a signal during a re-exec would kill the master), then restarts.
    The hot case runs without the load: a hot restart holds every request for a whole boot,
    which on this shared machine can pass the load's 30 s limit whether interrupted or not."""
    puma = stages.puma(alb=True)
    addresses = [h.address for h in inv.hosts(role="web")]
    unit = "sample-puma"

    def state(prop: str) -> str:
        return ssh(sandbox, "web1", f"systemctl show -p {prop} --value {unit}")

    master, restarts = state("MainPID"), state("NRestarts")
    env = {**os.environ, "RAILSFAB_HOSTS": str(puma), "COLUMNS": "200"}

    def interrupted_then_again():
        proc = subprocess.Popen([sys.executable, "-m", "fabric", "-r", str(ROOT), "restart-app",
                                 *flags, "--only", "web1"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env)
        try:
            wait_for("the restart on web1", lambda: state("ActiveState") == "reloading", 60)
            proc.send_signal(sig)
            proc.wait(30)
        finally:
            proc.kill()
            proc.wait()
        return run_fab(puma, "restart-app")

    if flags:
        r = interrupted_then_again()
    else:
        r, load = under_load(addresses, interrupted_then_again)
        assert load.result.failed == 0, load.result.errors
    assert r.returncode == 0, r.stdout + r.stderr
    assert (state("MainPID"), state("NRestarts"), state("ActiveState")) == \
        (master, restarts, "active")
