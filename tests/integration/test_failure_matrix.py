"""A failed deploy leaves every host serving what it served before, proven under load.

Each case deploys a release that fails in one way, for unicorn and for puma behind the ALB,
while 50 connections request / the way the ALB spreads them (tests/integration/alb.py: only
to the hosts its target group has in service). For each: the command fails naming host and
step, every host's app server runs the release it ran before (read from its processes'
working directories, not from `current`), the target group lists every host healthy again,
not one request failed, and the same command with the fault removed converges.
"""

from __future__ import annotations

import base64
import time

import pytest

from railsfab import aws, stack
from tests.conftest import run_fab
from tests.integration.alb import TargetGroupRoute
from tests.integration.test_deploy import current_release, get, ssh
from tests.load import Load

WEB = ("web1", "web2")
LAYOUT = "app/views/layouts/application.html.erb"
PATTERN = {"unicorn": "^unicorn (master|worker)", "puma": "^puma[ :]"}

# Each fault: (the app file edited, the text put before its content, what the failure says).
# Those of the prepare phase fail before any host switches; the others after a host was
# handed over, or while it was.
PUT_BACK = "back on what it served before, verified"
UNCHANGED = "current unchanged"
STATE = {"bundle fails": UNCHANGED}
FAULTS = {
    # The bundle cannot be resolved: the release is never activated anywhere.
    "bundle fails": ("Gemfile", 'gem "railsfab_matrix_missing"\n', "railsfab_matrix_missing"),
    # The case: handed over, then / answers 500: the gate fails at once with the
    # app's own error line, and the revert restarts the server from the previous release.
    "answers 500": (LAYOUT, '<% raise "failure matrix: this release answers 500" %>\n',
                    "this release answers 500"),
    # Times out: / answers after verify's 10 s per request (and past unicorn's timeout):
    # no answer is an answer only at the gate's deadline, then the same revert.
    "times out": (LAYOUT, "<% sleep 12 %>\n", "/ -> 000"),
    # Never boots: the new master (unicorn) or the new workers (puma) die loading the app.
    # Unicorn logs the exception; puma 5 only the first line of its backtrace.
    "never boots": ("config/initializers/zz_matrix.rb",
                    'raise "failure matrix: never boots" if $PROGRAM_NAME =~ /unicorn|puma/\n',
                    {"unicorn": "never boots", "puma": "zz_matrix.rb:1"}),
}


def served_release(sandbox, host: str, server: str) -> set[str]:
    """The releases the app server's processes run from (their working directories)."""
    out = ssh(sandbox, host, f"for p in $(pgrep -u deploy -f '{PATTERN[server]}'); do "
                             "sudo readlink /proc/$p/cwd; done")
    return {line.rsplit("/", 1)[-1] for line in out.split()}


def target_states(inv) -> dict[str, str]:
    tg = stack.outputs(inv)["TargetGroupArn"]
    return {t["Target"]["Id"]: t["TargetHealth"]["State"] for t in aws.clients(
        inv).elbv2.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]}


@pytest.fixture(scope="module", params=["unicorn", "puma"])
def server_stage(request, stages):
    path = stages.unicorn(alb=True) if request.param == "unicorn" else stages.puma(alb=True)
    return request.param, path


@pytest.fixture(scope="module")
def app(inv):
    return inv.resolve(inv.stage.app.source)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_failed_deploy_leaves_every_host_serving_what_it_served(fault, server_stage, app,
                                                                 sandbox, inv):
    """From the release the hosts serve (the app as it is), a release with `fault`: put
    back everywhere; then the app as it was deploys with nothing to change (the failed
    release left nothing behind that a deploy must undo)."""
    server, stage = server_stage
    addresses = [h.address for h in inv.hosts(role="web")]
    assert run_fab(stage, "deploy").returncode == 0
    before = {h: current_release(sandbox, h) for h in WEB}
    assert all(served_release(sandbox, h, server) == {before[h]} for h in WEB)
    states_before = target_states(inv)
    assert set(states_before.values()) == {"healthy"} and len(states_before) == 2
    path, text, said = FAULTS[fault]
    target = app / path
    good = target.read_text() if target.exists() else None
    target.write_text(text + (good or ""))
    try:
        r, load = under_alb_load(inv, lambda: run_fab(stage, "deploy"))
    finally:
        if good is None:
            target.unlink()
        else:
            target.write_text(good)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out  # failed, and every host was put back (not 3)
    assert (said if isinstance(said, str) else said[server]) in out, out
    assert "web1" in out and STATE.get(fault, PUT_BACK) in out, out
    assert "NOT put back" not in out, out
    assert load.result.failed == 0, (load.result.errors, out)
    for h in WEB:
        assert current_release(sandbox, h) == before[h]
        assert served_release(sandbox, h, server) == {before[h]}, out
    assert target_states(inv) == states_before
    assert all(get(a, "/")[0] == 200 for a in addresses)
    # the same command with the fault removed converges, on the release that served
    r = run_fab(stage, "deploy")
    assert r.returncode == 0, r.stdout + r.stderr
    assert {h: current_release(sandbox, h) for h in WEB} == before


def plant(sandbox, release: str, text: str | None) -> None:
    """As the app's deploy user, put (or with None, take away) an initializer that raises
    when an app server loads `release` (on every web host)."""
    f = f"/srv/sample/releases/{release}/config/initializers/zz_matrix.rb"
    b64 = base64.b64encode(f"{text}\n".encode()).decode() if text else ""
    cmd = f"echo {b64} | base64 -d | sudo -u deploy tee {f} >/dev/null" if text else \
        f"sudo -u deploy rm -f {f}"
    for h in WEB:
        ssh(sandbox, h, cmd)


def under_alb_load(inv, action):
    addresses = [h.address for h in inv.hosts(role="web")]
    with TargetGroupRoute(inv) as route, Load(addresses, connections=50, max_seconds=300,
                                              in_service=route) as load:
        time.sleep(1)
        r = action()
        time.sleep(1)
    assert load.result.ok > 100, "the load generator did not get going"
    return r, load


BOOM = 'raise "failure matrix: cannot load" if $PROGRAM_NAME =~ /unicorn|puma/'


def fails_cleanly_with_boom(sandbox, inv, release: str, command) -> str:
    """`command()` under the ALB's load while `release` cannot load (BOOM planted in it on
    every web host, taken away after): it fails on web1 saying so, not one request fails,
    and the target group lists both hosts healthy. Returns its output."""
    plant(sandbox, release, BOOM)
    try:
        r, load = under_alb_load(inv, command)
    finally:
        plant(sandbox, release, None)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "web1" in out and "cannot load" in out, out
    assert load.result.failed == 0, (load.result.errors, out)
    states = target_states(inv)
    assert set(states.values()) == {"healthy"} and len(states) == 2, out
    return out


def test_failed_rollback_leaves_every_host_on_the_release_it_served(server_stage, app,
                                                                   sandbox, inv):
    server, stage = server_stage
    view = app / "app/views/photos/index.html.erb"
    good_view = view.read_text()
    try:
        for n in ("older", "newer"):
            view.write_text(good_view + f"\n<p>matrix rollback {server} {n}</p>\n")
            assert run_fab(stage, "deploy").returncode == 0
    finally:
        view.write_text(good_view)
    newer = {h: current_release(sandbox, h) for h in WEB}
    older = ssh(sandbox, "web1", "sudo ls /srv/sample/releases | sort | tail -n 2 | head -n 1")
    out = fails_cleanly_with_boom(sandbox, inv, older, lambda: run_fab(stage, "rollback"))
    for h in WEB:
        assert current_release(sandbox, h) == newer[h]
        assert served_release(sandbox, h, server) == {newer[h]}, out
    r = run_fab(stage, "deploy")  # the app as it is now deploys
    assert r.returncode == 0, r.stdout + r.stderr


def test_failed_restart_keeps_every_host_serving(server_stage, sandbox, inv):
    """The code on disk cannot load (someone edited the release on the host): unicorn's new
    master dies and the old one keeps serving; puma's phased restart stops at its first
    worker that cannot load, the others keep serving. Either way the host rejoins the target
    group serving, and once the file is gone the same command completes."""
    server, stage = server_stage
    current = current_release(sandbox, "web1")
    main_pid = f"systemctl show -p MainPID --value sample-{server}"
    masters = {h: ssh(sandbox, h, main_pid) for h in WEB}
    out = fails_cleanly_with_boom(sandbox, inv, current, lambda: run_fab(stage, "restart-app"))
    for h in WEB:
        assert ssh(sandbox, h, main_pid) == masters[h]
        assert served_release(sandbox, h, server) == {current}, out
    r = run_fab(stage, "restart-app")
    assert r.returncode == 0, r.stdout + r.stderr
