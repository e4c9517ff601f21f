"""The executor runs a `background` change (apt) while the steps named `alongside` run, and
waits for it before any other step; failures on either side are raised, never left running.
Steps here are Changes whose work is a Python callable (no host, no SSH)."""

from __future__ import annotations

import io
import threading
import time

import pytest
from rich.console import Console

from railsfab import inventory
from railsfab.deploy import ALONGSIDE_APT, alongside_apt
from railsfab.errors import RailsfabError
from railsfab.executor import Executor, HostRun
from railsfab.ops.base import Change, Plan, Planned
from railsfab.report import Reporter

ALONGSIDE = frozenset({"deploy user", "release"})


class Timeline:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, str]] = []

    def step(self, name: str, seconds: float = 0.0, fail: bool = False):
        def run(r: HostRun) -> str:
            self.add(name, "start")
            time.sleep(seconds)
            self.add(name, "end")
            if fail:
                raise RailsfabError(f"{name} failed", step=name)
            return f"{name} done"
        return run

    def add(self, name: str, what: str) -> None:
        with self.lock:
            self.events.append((name, what))

    def at(self, name: str, what: str) -> int:
        return self.events.index((name, what))


def plan_of(t: Timeline, *, apt_fails: bool = False, user_fails: bool = False) -> Plan:
    return Plan([
        Planned("packages", Change("install nginx", background=True,
                                   run=t.step("packages", 0.4, fail=apt_fails))),
        Planned("deploy user", Change("create deploy", run=t.step("deploy user", fail=user_fails))),
        Planned("release", Change("create release", run=t.step("release"))),
        Planned("bundle", Change("bundle", run=t.step("bundle"))),
    ])


def run(plan: Plan, alongside=ALONGSIDE) -> tuple[HostRun, str]:
    out = io.StringIO()
    rep = Reporter(Console(file=out, width=200, highlight=False), live=False)
    r = HostRun(host=inventory.Host(name="web1", address="198.51.100.7"))
    try:
        Executor(rep).run(r, plan, alongside)
    finally:
        rep.close()
    return r, out.getvalue()


def test_alongside_steps_run_while_apt_runs_and_the_next_step_waits():
    t = Timeline()
    r, out = run(plan_of(t))
    assert t.at("deploy user", "end") < t.at("packages", "end")
    assert t.at("release", "end") < t.at("packages", "end")
    assert t.at("packages", "end") < t.at("bundle", "start")
    assert sorted(r.applied) == ["bundle", "deploy user", "packages", "release"]
    assert "packages done" in out  # the background step is reported like any other


def test_without_alongside_steps_everything_is_in_order():
    t = Timeline()
    run(plan_of(t), alongside=frozenset())
    assert [n for n, what in t.events if what == "start"] == [
        "packages", "deploy user", "release", "bundle"]
    assert t.at("packages", "end") < t.at("deploy user", "start")


def test_apt_failing_stops_before_the_first_step_that_needs_it():
    t = Timeline()
    with pytest.raises(RailsfabError, match="packages failed"):
        run(plan_of(t, apt_fails=True))
    assert ("bundle", "start") not in t.events


def test_a_failing_alongside_step_waits_for_apt_before_it_is_raised():
    t = Timeline()
    with pytest.raises(RailsfabError, match="deploy user failed"):
        run(plan_of(t, user_fails=True))
    assert ("packages", "end") in t.events  # not left running behind the error
    assert ("release", "start") not in t.events and ("bundle", "start") not in t.events


def test_a_dry_run_starts_nothing_in_the_background():
    t = Timeline()
    out = io.StringIO()
    rep = Reporter(Console(file=out, width=200, highlight=False), live=False)
    r = HostRun(host=inventory.Host(name="web1", address="198.51.100.7"))
    Executor(rep, dry=True).run(r, plan_of(t), ALONGSIDE)
    assert t.events == [] and "would install nginx" in out.getvalue()


class _D:
    def __init__(self, artifact) -> None:
        self.artifact = artifact


def test_the_release_waits_for_apt_when_it_is_fetched_with_curl():
    assert alongside_apt(_D(None)) == frozenset(ALONGSIDE_APT)
    assert "release" not in alongside_apt(_D(object()))
