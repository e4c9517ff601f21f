"""Repairing deploys: what a failed run (or a crash loop) left behind is read from the host,
never assumed, and the next deploy puts it right.

- nginx reloads when its config on disk changed after the running nginx read it (a run that
  wrote and enabled the site, then failed before the reload), not only when this run
  changes the site; a deployed host stays a no-op.
- a crash-looping or failed app server is stopped and reset before it is started, so the
  start runs the new release instead of joining the failing start job.
- `fab rails` leaves what it wrote into public/ readable by nginx.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
import time

import pytest

from railsfab.facts import Facts
from railsfab.onhost import facts as onhost_facts
from railsfab.ops import runs
from railsfab.ops.base import Change, NoChange
from tests.unit.test_plans import deployed, edit, outcome, stage, unit_of


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        return stage(tmp_path_factory.mktemp("repair"), mp)


def changed_after_load(*paths_of, by: float = 5.0):
    """These config paths were written `by` seconds after the running nginx read its config."""
    def fn(raw, d):
        for path_of in paths_of:
            raw["nginx"]["mtimes"][path_of(d)] = raw["nginx"]["loaded"] + by
    return fn


def site_file(d):
    return d.paths.nginx_site


def enabled_link(d):
    return d.paths.nginx_site_enabled


def sites_enabled(d):
    return "/etc/nginx/sites-enabled"

NGINX_CASES = [
    ("loaded after its last change: nothing to do", deployed, NoChange,
     r"^running, serves the config on disk"),
    ("site written and enabled by a run that failed before the reload",
     edit(deployed, changed_after_load(site_file, enabled_link, sites_enabled)), Change,
     r"^reload \(the running nginx read its config before /etc/nginx/sites-available/shop, "
     r"/etc/nginx/sites-enabled/shop, /etc/nginx/sites-enabled changed\)$"),
    ("default site removed after the last reload",
     edit(deployed, changed_after_load(sites_enabled)), Change,
     r"before /etc/nginx/sites-enabled changed"),
    ("written within the clock's slack of the reload: that reload read it",
     edit(deployed, changed_after_load(site_file, by=0.2)), NoChange, r"serves the config on disk"),
    ("no nginx master found: reload to be sure",
     edit(deployed, lambda r, d: r["nginx"].update(loaded=None)), Change,
     r"^reload \(could not tell when the running nginx read its config\)$"),
    ("facts from a host that did not say", edit(deployed, lambda r, d: r.pop("nginx")), Change,
     r"could not tell"),
    ("nginx stopped: start it (it reads the config as it starts)",
     edit(edit(deployed, changed_after_load(site_file)),
          lambda r, d: r["units"]["nginx"].update(active="inactive")), Change, r"^start$"),
]


@pytest.mark.parametrize("case,facts,kind,says", NGINX_CASES, ids=[c[0] for c in NGINX_CASES])
def test_nginx_reloads_when_what_it_serves_is_not_the_config_on_disk(app, case, facts, kind,
                                                                      says):
    got = outcome(facts(app), app, "nginx")
    assert isinstance(got, kind), got
    assert re.search(says, got.what if isinstance(got, Change) else got.reason)


def test_a_host_whose_nginx_missed_the_reload_is_out_of_service_while_it_reloads(app):
    from railsfab.deploy import plan

    plans = plan(edit(deployed, changed_after_load(site_file))(app), app, migrate=True)
    assert [p.step for p in plans["activate"].changed] == ["nginx"]


SERVER_CASES = [
    ("stopped", "inactive", r"^start shop-unicorn.service$"),
    ("crash-looping", "activating",
     r"^start shop-unicorn.service \(it is activating: stop its start job and reset it first\)$"),
    ("given up on", "failed", r"\(it is failed: stop its start job and reset it first\)$"),
]


@pytest.mark.parametrize("case,active,says", SERVER_CASES, ids=[c[0] for c in SERVER_CASES])
def test_an_app_server_that_is_not_running_is_started_fresh(app, case, active, says):
    f = edit(deployed, lambda r, d: unit_of(r, d, active=active, main_pid="0"))(app)
    got = outcome(f, app, "unicorn")
    assert isinstance(got, Change) and re.search(says, got.what), got.what


def fake_systemctl(tmp_path, active: str) -> dict:
    """A `systemctl` that logs its arguments and says the unit is `active`."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "systemctl").write_text(
        f'#!/bin/sh\necho "$*" >> {tmp_path}/calls\n'
        f'if [ "$1" = is-active ]; then [ {active} = active ]; exit $?; fi\n'
        'if [ "$1" = reset-failed ]; then exit 1; fi\n')  # as for a unit not failed
    (bin_ / "systemctl").chmod(0o755)
    return {**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}"}


@pytest.mark.parametrize("active,calls", [
    ("activating", ["is-active -q u", "stop u", "reset-failed u", "start u"]),
    ("active", ["is-active -q u", "start u"]),
])
def test_start_stops_and_resets_a_unit_that_is_not_active_first(tmp_path, active, calls):
    env = fake_systemctl(tmp_path, active)
    script = f"{runs.stop_failing('u')} && systemctl start u"
    subprocess.run(["sh", "-c", script], env=env, check=True)
    assert (tmp_path / "calls").read_text().splitlines() == calls


def test_rails_commands_leave_public_readable_by_nginx(app, tmp_path):
    from dataclasses import replace

    from railsfab import console
    from railsfab.paths import Paths

    current = tmp_path / "current"
    (current / "public/assets").mkdir(parents=True, mode=0o750)
    (current / "public/assets/app-1.css").write_text("body{}")
    (current / "public/assets/app-1.css").chmod(0o640)
    (current / "public").chmod(0o750)
    s = replace(app, paths=replace(app.paths, deploy_to=str(tmp_path)))
    assert isinstance(s.paths, Paths) and s.paths.current == str(current)
    script = console.open_public_script(s)
    assert script.startswith("runuser -u deploy -- sh -c ")  # as the owner, never root
    subprocess.run(["sh", "-c", shlex.split(script)[-1]], check=True)
    for path in ("public", "public/assets", "public/assets/app-1.css"):
        assert (current / path).stat().st_mode & stat.S_IROTH, path


def test_rails_commands_refuse_a_public_that_is_a_link(app, tmp_path):
    from dataclasses import replace

    from railsfab import console

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (tmp_path / "current").mkdir()
    (tmp_path / "current/public").symlink_to(elsewhere)
    s = replace(app, paths=replace(app.paths, deploy_to=str(tmp_path)))
    r = subprocess.run(["sh", "-c", shlex.split(console.open_public_script(s))[-1]],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "is a link to" in r.stderr
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o700


def test_the_host_reads_when_nginx_last_read_its_config(tmp_path):
    """On the host: the newest process of the master's family started after the config it
    serves was read; a path written after that is named, one written before is not."""
    before, after = tmp_path / "before", tmp_path / "after"
    before.write_text("x")
    os.utime(before, (time.time() - 60,) * 2)
    after.write_text("x")
    os.utime(after, (time.time() + 60,) * 2)
    master = subprocess.Popen(["sleep", "30"])
    try:
        got = onhost_facts.nginx_loaded(
            {"paths": [str(before), str(after), str(tmp_path / "gone")], "pid_file": "/none"},
            str(master.pid))
    finally:
        master.kill()
        master.wait()
    assert abs(got["loaded"] - time.time()) < 5
    assert Facts({"nginx": got}).nginx_not_loaded() == [str(after)]
    assert onhost_facts.nginx_loaded({"paths": [], "pid_file": str(tmp_path / "none")},
                                     "0") == {"loaded": None, "mtimes": {}}
