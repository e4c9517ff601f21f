"""Drift: what railsfab renders against what the host has, and a unit changed on disk that
systemd has not read again: warnings (the app works now), with `fab deploy` as the fix."""

from __future__ import annotations

import copy

from railsfab import inventory
from railsfab.diagnose import evaluate, first_broken
from railsfab.diagnose.drift import expected, summary
from railsfab.paths import Paths
from tasks.check import summary as host_summary
from tests.conftest import ROOT
from tests.unit.test_diagnose import HEALTHY, PATHS

UNIT = "[Service]\nType=notify\nTimeoutStopSec=30\nRestart=on-failure\n"


def layer(verdicts, name):
    return next(v for v in verdicts if v.layer == name)


def judged(mutate, wanted=None):
    d = copy.deepcopy(HEALTHY)
    mutate(d)
    return evaluate(d, workers=2, app_user="deploy", paths=PATHS, expected=wanted)


def test_railsfab_renders_each_file_of_the_stage_it_may_find_there():
    inv = inventory.load(ROOT / "hosts.yaml")
    paths = Paths.of(inv.stage.app)
    wanted = expected(inv, paths)
    assert set(wanted) == {paths.unit, paths.server_config, paths.nginx_site}
    assert all(text.startswith("#") for texts in wanted.values() for text in texts)


def test_a_changed_line_is_summed_up_with_what_the_host_has():
    host = UNIT.replace("TimeoutStopSec=30", "TimeoutStopSec=31")
    assert summary(host, [UNIT]) == ("2 line(s) differ from what railsfab renders (the host "
                                     "has: 'TimeoutStopSec=31')")


def test_drift_and_a_unit_systemd_has_not_read_again_are_warnings_not_failures():
    def changed(d):
        d["server"]["unit"]["NeedDaemonReload"] = "yes"
        d["texts"] = {PATHS.unit: UNIT.replace("30", "31")}
    verdicts = judged(changed, {PATHS.unit: [UNIT]})
    v = layer(verdicts, "app server")
    assert v.status == "warn"
    assert v.detail.startswith(f"{PATHS.unit} changed on disk after systemd read it: the next "
                               "restart runs what is on disk")
    assert f"{PATHS.unit}: 2 line(s) differ" in v.detail and v.fix.startswith("fab deploy")
    assert first_broken(verdicts) is None  # the app works: nothing is broken
    said = host_summary("web2", verdicts, None)
    assert said.startswith("[yellow]⚠ web2: every layer works, with warnings[/]")
    assert "fix: fab deploy" in said


def test_a_file_as_railsfab_renders_it_is_no_drift():
    def same(d):
        d["texts"] = {PATHS.unit: UNIT}
    assert layer(judged(same, {PATHS.unit: [UNIT, UNIT + "x"]}), "app server").status == "ok"
    assert layer(judged(lambda d: None, None), "app server").status == "ok"  # not asked
