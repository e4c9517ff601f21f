"""A failed command leaves every host serving what it served before, proven under load.

A failure is injected at each step of a deploy (PREPARE: before any host leaves service;
ACTIVATE and register: once web1 was drained from the target group), of rollback and of
restart-app, for unicorn and for puma behind the ALB, while 50 connections request / the
way the ALB spreads them (tests/integration/alb.py: only to the hosts its target group has
in service). For each: the command fails naming host and step, every host's app server runs
the release it ran before (read from its processes' working directories, not from
`current`), the target group lists every host healthy again, not one request failed, and
the same command with the fault removed converges. The server switch is in
test_failure_matrix_switch.py.
"""

from __future__ import annotations

import threading
import time

import pytest

from railsfab import aws
from tests.conftest import run_fab
from tests.integration.matrix import (
    LAYOUT,
    WEB,
    Ctx,
    all_healthy,
    app_edit,
    both,
    fab_watched,
    on_web1,
    plant,
    served_release,
    stage_edit,
    target_states,
    template_edit,
    under_alb_load,
)
from tests.integration.test_deploy import current_release, get, ssh

PUT_BACK = "back on what it served before, verified"
UNCHANGED = "current unchanged"

# A new release (the view changed) whose deploy fails in the prepare phase (or at the
# migration that follows it): each before any host is taken out of service. fault: (how it
# is injected, the step named, what the failure says).
NEW = app_edit("app/views/photos/index.html.erb", "<p>failure matrix: never served</p>\n")
TAR = "/usr/local/bin/tar"
DROPIN = "/etc/systemd/system/nginx.service.d"
PREPARE = {
    # apt cannot install what the stage lists.
    "packages": (both(NEW, stage_edit("missing-package", lambda st: st["app"].setdefault(
        "packages", []).append("railsfab-matrix-missing"))), "packages",
        "railsfab-matrix-missing"),
    # The release cannot be written on web1 (its disk is full: tar says so).
    "release upload": (both(NEW, on_web1(
        f"printf '#!/bin/sh\\necho \"tar: write error: No space left on device\" >&2; "
        f"exit 2\\n' > {TAR} && chmod 755 {TAR}", f"rm -f {TAR}")), "release",
        "No space left on device"),
    # The bundle cannot be resolved.
    "bundle": (app_edit("Gemfile", 'gem "railsfab_matrix_missing"\n'), "bundle",
               "railsfab_matrix_missing"),
    # assets:precompile fails (the stylesheet imports a file that is not there).
    "assets": (app_edit("app/assets/stylesheets/application.scss",
                        '@import "matrix_missing";\n'), "assets", "matrix_missing"),
    # The migration raises.
    "migrations": (both(NEW, app_edit(
        "db/migrate/29990101000001_matrix_boom.rb",
        "class MatrixBoom < ActiveRecord::Migration[6.1]\n  def change\n"
        "    raise \"failure matrix: the migration fails\"\n  end\nend\n")),
        "migrate", "the migration fails"),
}

# A new release that fails once hosts are taken out of service, one by one through the
# target group: web1 is handed over (or was being) and put back.
ACTIVATE = {
    # The case: handed over, then / answers 500: the gate fails at once with the
    # app's own error line, and the revert restarts the server from the previous release.
    "answers 500": (app_edit(LAYOUT, '<% raise "failure matrix: this release answers 500" %>\n'),
                    "verify", "this release answers 500"),
    # Times out: / answers after verify's 10 s per request (and past unicorn's timeout):
    # no answer is an answer only at the gate's deadline, then the same revert.
    "times out": (app_edit(LAYOUT, "<% sleep 12 %>\n"), "verify", "/ -> 000"),
    # Never boots: the new master (unicorn) or the new workers (puma) die loading the app.
    # Unicorn logs the exception; puma 5 only the first line of its backtrace.
    "never boots": (app_edit("config/initializers/zz_matrix.rb",
                             'raise "failure matrix: never boots" if $PROGRAM_NAME =~ '
                             '/unicorn|puma/\n'),
                    None, {"unicorn": "never boots", "puma": "zz_matrix.rb:1"}),
    # nginx refuses the site (a template override with a typo): `nginx -t` fails before
    # nginx reloads, the running nginx keeps the config it serves.
    "nginx": (both(NEW, template_edit("nginx-site.conf.j2", "proxy_pass http://",
                                      "proxy_passs http://")), "nginx site", "proxy_passs"),
    # The site changes (a new client_max_body_size) and web1's nginx fails to reload after
    # its app server was handed over: the server and the site are put back.
    "nginx reload": (both(NEW, stage_edit("body-size", lambda st: st["app"].update(
        client_max_body_size="30m")), on_web1(
        f"mkdir -p {DROPIN} && printf '[Service]\\nExecReload=\\nExecReload=/bin/sh -c "
        f"\"echo failure matrix: reload refused >&2; exit 1\"\\n' > {DROPIN}/zz-matrix.conf"
        " && systemctl daemon-reload",
        f"rm -f {DROPIN}/zz-matrix.conf && systemctl daemon-reload")),
        "nginx", "reload refused"),
}


@pytest.fixture(scope="module", params=["unicorn", "puma"])
def server_stage(request, stages):
    path = stages.unicorn(alb=True) if request.param == "unicorn" else stages.puma(alb=True)
    return request.param, path


@pytest.fixture(scope="module")
def app(inv):
    return inv.resolve(inv.stage.app.source)


def serving(sandbox, inv, server: str) -> dict[str, str]:
    """Each web host's release, read from `current` and its app server's processes; the
    target group lists both healthy."""
    now = {h: current_release(sandbox, h) for h in WEB}
    assert all(served_release(sandbox, h, server) == {now[h]} for h in WEB)
    assert all_healthy(inv)
    return now


def failed_cleanly(r, load, *, step: str, said: str, state: str) -> str:
    """The command failed at `step` on web1 saying `said`, every host was put back (exit
    status 1, not 3: nothing left that could not be) and not one request failed."""
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert f"failed on web1, step {step}\n" in out, out
    assert said in out and state in out, out
    assert "NOT put back" not in out, out
    assert load.result.failed == 0, (load.result.errors, out)
    return out


def test_prepare_failures_switch_no_host(server_stage, app, sandbox, inv):
    """Under one load, a new release whose deploy fails at each step of the prepare phase
    and at the migration: no host is taken out of service, each serves what it did; then
    the app as it is deploys with nothing to change."""
    server, stage = server_stage
    assert run_fab(stage, "deploy").returncode == 0
    before = serving(sandbox, inv, server)
    ctx = Ctx(app, stage, sandbox, inv)
    outs = {}

    def each():
        for fault, (inject, _, _) in PREPARE.items():
            with inject(ctx) as path:
                r = run_fab(path, "deploy")
            outs[fault] = r
            assert r.returncode == 1, (fault, r.stdout + r.stderr)
            assert serving(sandbox, inv, server) == before, fault
        return outs
    _, load = under_alb_load(inv, each)
    for fault, (_, step, said) in PREPARE.items():
        out = failed_cleanly(outs[fault], load, step=step, said=said, state=UNCHANGED)
        assert "deregister" not in out, (fault, out)
    r = run_fab(stage, "deploy")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "create release" not in r.stdout and serving(sandbox, inv, server) == before


@pytest.mark.parametrize("fault", list(ACTIVATE))
def test_failed_deploy_leaves_every_host_serving_what_it_served(fault, server_stage, app,
                                                                 sandbox, inv):
    """From the release the hosts serve (the app as it is), a release with `fault`: put
    back everywhere; then the app as it was deploys with nothing to change (the failed
    release left nothing behind that a deploy must undo)."""
    server, stage = server_stage
    addresses = [h.address for h in inv.hosts(role="web")]
    assert run_fab(stage, "deploy").returncode == 0
    before = serving(sandbox, inv, server)
    inject, step, said = ACTIVATE[fault]
    with inject(Ctx(app, stage, sandbox, inv)) as path:
        r, load = under_alb_load(inv, lambda: run_fab(path, "deploy"))
    out = failed_cleanly(r, load, step=step or server,
                         said=said if isinstance(said, str) else said[server], state=PUT_BACK)
    assert serving(sandbox, inv, server) == before, out
    assert all(get(a, "/")[0] == 200 for a in addresses)
    # the same command with the fault removed converges, on the release that served
    r = run_fab(stage, "deploy")
    assert r.returncode == 0, r.stdout + r.stderr
    assert {h: current_release(sandbox, h) for h in WEB} == before


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


def test_failed_register_puts_the_host_back(server_stage, app, sandbox, inv):
    """web1 took the new release and passed its local gate, but the target group refuses
    it (AWS sees its instance stopped, once it was drained): web1 is put back on what it
    served, and registered again once its instance runs."""
    server, stage = server_stage
    assert run_fab(stage, "deploy").returncode == 0
    before = serving(sandbox, inv, server)
    ec2, iid = aws.clients(inv).ec2, sandbox.instance_id("web1")
    stopped, started, end = threading.Event(), threading.Event(), threading.Event()

    def stop_once_drained():
        while not end.is_set():
            if iid not in target_states(inv):
                ec2.stop_instances(InstanceIds=[iid])
                return stopped.set()
            time.sleep(0.2)

    def start_once_refused(line: str) -> None:
        if stopped.is_set() and not started.is_set() and "refused" in line:
            ec2.start_instances(InstanceIds=[iid])
            started.set()

    watcher = threading.Thread(target=stop_once_drained, daemon=True)
    watcher.start()
    try:
        with NEW(Ctx(app, stage, sandbox, inv)) as path:
            r, load = under_alb_load(inv, lambda: fab_watched(path, "deploy",
                                                              on_line=start_once_refused))
    finally:
        end.set()
        ec2.start_instances(InstanceIds=[iid])
    assert stopped.is_set() and started.is_set(), r.stdout
    out = failed_cleanly(r, load, step="register", said="not in a running state",
                         state=PUT_BACK + " and back in the target group")
    assert serving(sandbox, inv, server) == before, out
    r = run_fab(stage, "deploy")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "create release" not in r.stdout
