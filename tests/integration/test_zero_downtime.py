"""Restarts, deploys, rollbacks and failures while a 50-connection load runs through nginx,
on unicorn behind the ALB (the canary first, out of the target group for its handover, then
baked under the load; the rest hand over in service): none of them may fail a request, a
failure must leave the old release serving, and a canary whose traffic fails stops the
rollout."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, run_fab
from tests.integration.test_deploy import current_release, get, master_pid, ssh
from tests.load import Load

WEB = ("web1", "web2")


@pytest.fixture(scope="module")
def stage(stages):
    return stages.unicorn(alb=True)


@pytest.fixture(scope="module")
def app(stage, inv):
    return inv.resolve(inv.stage.app.source)


@pytest.fixture(scope="module")
def addresses(inv):
    return [h.address for h in inv.hosts(role="web")]


def under_load(addresses, action, **kw):
    """Run `action()` while 50 connections request / through nginx; return both results."""
    with Load(addresses, connections=50, max_seconds=300, **kw) as load:
        time.sleep(1)
        out = action()
        time.sleep(1)
    assert load.result.ok > 100, "the load generator did not get going"
    return out, load


def masters(sandbox, host: str) -> list[str]:
    return ssh(sandbox, host, "pgrep -u sample -f '^unicorn master' || true").split()


def systemd_main_pid(sandbox, host: str) -> str:
    return ssh(sandbox, host, "systemctl show -p MainPID --value sample-unicorn")


def edit_view(app, text: str) -> None:
    view = app / "app/views/photos/index.html.erb"
    body = view.read_text().split("\n<!-- zd -->", 1)[0]
    view.write_text(f"{body}\n<!-- zd -->\n<p>{text}</p>\n")


def rolled(out: str, *steps: str) -> list[tuple[str, str]]:
    """(host, step) in the order the output shows them, for the given steps."""
    alts = "|".join(re.escape(s) for s in steps)
    return [(m.group(1), m.group(2)) for m in re.finditer(
        rf"^\s+(web\d)\s+\w+\s+({alts})\s{{2,}}", out, re.M)]


def test_restart_app_behind_the_alb_under_load_loses_nothing(app, sandbox, stage, addresses):
    before = {h: master_pid(sandbox, h) for h in WEB}
    r, load = under_load(addresses, lambda: run_fab(stage, "restart-app"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert load.result.failed == 0, load.result.errors
    # the canary out of the target group for its handover and gate, the rest (a USR2
    # handover loses nothing) in service (no bake: a restart changes no release)
    assert ("rollout  canary web1 (out of the target group for its activation and gate); "
            "then web2 at once, in service") in r.stdout
    assert rolled(r.stdout, "deregister", "unicorn", "verify", "register") == [
        ("web1", "deregister"), ("web1", "unicorn"), ("web1", "verify"), ("web1", "register"),
        ("web2", "unicorn"), ("web2", "verify")]
    for h in WEB:
        pid = master_pid(sandbox, h)
        assert pid != before[h]
        assert masters(sandbox, h) == [pid]  # exactly one master, the one the pid file names
        assert systemd_main_pid(sandbox, h) == pid  # systemd still tracks it


def test_deploy_of_a_changed_release_under_load(app, sandbox, stage, addresses):
    edit_view(app, "zero downtime two")
    t0 = time.monotonic()
    r, load = under_load(addresses, lambda: run_fab(stage, "deploy"),
                         marker="zero downtime two")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "zero-downtime handover" in r.stdout
    assert load.result.failed == 0, load.result.errors
    assert load.marker_seen_at is not None and load.marker_seen_at > t0
    for address in addresses:
        assert "zero downtime two" in get(address, "/")[2]


def test_rollback_behind_the_alb_under_load_goes_canary_first(app, sandbox, stage, addresses):
    edit_view(app, "zero downtime three")
    assert run_fab(stage, "deploy").returncode == 0
    r, load = under_load(addresses, lambda: run_fab(stage, "rollback"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert load.result.failed == 0, load.result.errors
    # the way a deploy goes: the canary (baked), then the rest, in service
    assert rolled(r.stdout, "deregister", "switch", "bake", "verify", "register") == [
        ("web1", "deregister"), ("web1", "switch"), ("web1", "verify"), ("web1", "register"),
        ("web1", "bake"), ("web2", "switch"), ("web2", "verify")]
    for address in addresses:
        body = get(address, "/")[2]
        assert "zero downtime two" in body and "zero downtime three" not in body
    listing = run_fab(stage, "releases").stdout
    assert "← current" in listing and "good" in listing


def canary_route(app, status: int) -> None:
    """/canary answers `status` (a Rack endpoint in config/routes.rb)."""
    routes = app / "config/routes.rb"
    text = re.sub(r'  get "/canary".*\n', "", routes.read_text())
    routes.write_text(text.replace(
        '  root "photos#index"',
        f'  get "/canary", to: ->(_env) {{ [{status}, {{}}, ["canary"]] }}\n'
        '  root "photos#index"'))


def test_canary_answering_500_on_one_path_stops_the_rollout(app, sandbox, stages, addresses):
    """The new release answers 500 on /canary only (/, /up and the assets answer: the local
    gate passes). The canary bakes under real traffic, its 5xx are seen in its access log,
    the rollout stops there and puts it back; web2 never sees the release and fails
    nothing."""
    stage = stages.variant("hosts-canary.yaml", lambda st: st.update(rollout={"bake": 10}))
    try:
        canary_route(app, 200)
        assert run_fab(stage, "deploy").returncode == 0
        before = {h: current_release(sandbox, h) for h in WEB}
        canary_route(app, 500)
        dry = run_fab(stage, "deploy", "--dry-run")  # says the rollout, changes nothing
        assert ("rollout  canary web1 (out of the target group for its activation and gate), "
                "then bakes up to 10 s (or 500 requests) judged by its traffic against web2; "
                "then web2 at once, in service") in dry.stdout
        with Load(addresses[:1], path="/canary", connections=10, max_seconds=300), \
                Load(addresses[1:], path="/canary", connections=40, max_seconds=300) as others:
            time.sleep(1)
            r = run_fab(stage, "deploy")
            time.sleep(1)
    finally:
        canary_route(app, 200)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "rollout  canary web1 (out of the target group for its activation and gate)" in out
    assert re.search(r"fab deploy failed on web1, step bake", out), out
    assert "GET /canary" in out and "500" in out  # the failing request lines, quoted
    assert "back on what it served before" in out
    assert others.result.ok > 100 and others.result.failed == 0, others.result.errors
    assert not re.search(r"^\s+web2\s+\w+\s+(switch|unicorn)\s", out, re.M)
    assert {h: current_release(sandbox, h) for h in WEB} == before
    for address in addresses:
        assert get(address, "/canary")[0] == 200
    edit_view(app, "after the canary")
    fixed = run_fab(stage, "deploy")  # a release without the fault goes out
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert re.search(r"web1\s+ok\s+bake\s", fixed.stdout), fixed.stdout


def test_release_that_raises_at_boot_never_serves(app, sandbox, stage, addresses):
    edit_view(app, "zero downtime four")
    assert run_fab(stage, "deploy").returncode == 0
    before = {h: current_release(sandbox, h) for h in WEB}
    boom = app / "config/initializers/zz_boom.rb"
    # Only the app server dies: assets:precompile (bin/rails) still works.
    boom.write_text('raise "boom at boot" if $PROGRAM_NAME.include?("unicorn")\n')
    try:
        r, load = under_load(addresses, lambda: run_fab(stage, "deploy"))
    finally:
        boom.unlink()
    assert r.returncode != 0
    assert "failed to boot" in r.stdout and "boom at boot" in r.stdout
    assert "back in the target group" in r.stdout
    assert load.result.failed == 0, load.result.errors
    assert {h: current_release(sandbox, h) for h in WEB} == before
    for address in addresses:
        assert "zero downtime four" in get(address, "/")[2]
    failed = ssh(sandbox, "web1", "sudo ls /srv/sample/releases-failed")
    assert failed  # moved aside, kept for inspection
    assert run_fab(stage, "deploy").returncode == 0  # fixed source deploys again


def test_invalid_nginx_template_keeps_the_old_config(app, sandbox, stage, inv, addresses):
    site = "/etc/nginx/sites-available/sample"
    old = ssh(sandbox, "web1", f"cat {site}")
    override = inv.root / "templates/nginx-site.conf.j2"
    override.parent.mkdir(exist_ok=True)
    builtin = (ROOT / "templates/nginx-site.conf.j2").read_text()
    override.write_text(builtin.replace("proxy_pass http://", "proxy_passs http://"))
    try:
        r, load = under_load(addresses, lambda: run_fab(stage, "deploy"))
    finally:
        override.unlink()
    assert r.returncode != 0
    assert "step nginx site" in r.stdout and "proxy_passs" in r.stdout
    assert load.result.failed == 0, load.result.errors
    assert ssh(sandbox, "web1", f"cat {site}") == old
    assert all(get(a, "/")[0] == 200 for a in addresses)


def test_failing_migration_switches_no_host(app, sandbox, stage, addresses):
    before = {h: current_release(sandbox, h) for h in WEB}
    migration = app / "db/migrate/29990101000000_broken.rb"
    migration.write_text('class Broken < ActiveRecord::Migration[6.1]\n'
                         '  def change\n    raise "migration failed on purpose"\n  end\nend\n')
    edit_view(app, "never served")
    try:
        r = run_fab(stage, "deploy")
    finally:
        migration.unlink()
        edit_view(app, "zero downtime four")
    assert r.returncode != 0
    assert "step migrate" in r.stdout and "migration failed on purpose" in r.stdout
    assert not any(ln for ln in r.stdout.splitlines() if " switch " in ln)
    assert {h: current_release(sandbox, h) for h in WEB} == before
    assert all("never served" not in get(a, "/")[2] for a in addresses)


def test_killed_deploy_is_converged_by_the_next_one(app, sandbox, stage, addresses):
    edit_view(app, "after the kill")
    env = {**os.environ, "RAILSFAB_HOSTS": str(stage), "COLUMNS": "200"}
    proc = subprocess.Popen([sys.executable, "-m", "fabric", "-r", str(ROOT), "deploy"],
                            stdout=subprocess.PIPE, text=True, env=env)
    # Kill it hard, connections and all, once the new release is on its way.
    for line in proc.stdout:
        if " release " in line:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    held = ssh(sandbox, "web1", "sudo cat /var/lib/railsfab/locks/sample/holder.json "
               "2>/dev/null || echo '{}'")
    r = run_fab(stage, "deploy")
    assert r.returncode == 0, r.stdout + r.stderr
    if json.loads(held).get("pid") == proc.pid:
        assert "took over the lock of a dead deploy" in r.stdout
    for address in addresses:
        assert "after the kill" in get(address, "/")[2]
    again = run_fab(stage, "deploy")
    assert "0 changed" in again.stdout
