"""Putting a host back after a failed activation: which steps the revert plans from what
this run did, when a failed restart counts as having changed the server, and which restart
a rollback (or a revert) uses. No host: plans from facts, and a stand-in app server."""

from __future__ import annotations

import pytest

from railsfab import commands, releases
from railsfab.appserver.unicorn import Unicorn
from railsfab.errors import RailsfabError
from railsfab.executor import HostRun
from railsfab.inventory import Host
from railsfab.ops import activate, runs
from railsfab.ops.base import Change, Check
from tests.unit.test_plans import deployed, stage

PREV = "20261130000000"


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        return stage(tmp_path_factory.mktemp("unicorn"), mp)


@pytest.fixture(scope="module")
def puma(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        return stage(tmp_path_factory.mktemp("puma"), mp, app_server="puma")


def run_of(d, *, applied=(), restarted=False, facts=None) -> HostRun:
    """A run that applied the steps `applied`; a "nginx" among them completed (marked)
    unless it is given as "nginx!" (started and failed)."""
    r = HostRun(Host(name="web1", address="198.51.100.7", roles=["web"]))
    r.facts = facts or deployed(d, PREV)
    r.applied = [s.rstrip("!") for s in applied]
    r.marks = {"nginx": 1.0} if "nginx" in applied else {}
    r.restarted = restarted
    return r


def steps(plan) -> list[tuple[str, str, str]]:
    return [(p.step, type(p.outcome).__name__, p.outcome.what) for p in plan]


def test_after_a_handover_the_revert_restarts_from_the_previous_release_and_reads_it(d):
    r = run_of(d, applied=["switch", "unicorn"], restarted=True)
    assert steps(activate.revert_plan(d, r, leaving_gems=d.digests.gems)) == [
        ("revert", "Change", f"point current to releases/{PREV}"),
        ("revert", "Change", f"restart unicorn from {PREV}"),
        ("release", "Check", f"unicorn runs releases/{PREV}"),
        ("verify", "Check", "/, /up and an asset answer 200 through nginx"),
    ]
    assert all(p.outcome.always for p in activate.revert_plan(d, r) if isinstance(
        p.outcome, Check))


def test_a_site_this_run_wrote_is_put_back_as_it_was_before_the_server(d):
    r = run_of(d, applied=["nginx site", "switch", "unicorn", "nginx"], restarted=True)
    r.facts.raw["texts"][d.paths.nginx_site] = "the site before"
    plan = activate.revert_plan(d, r, leaving_gems=d.digests.gems)
    assert [s[2] for s in steps(plan)][:3] == [
        f"point current to releases/{PREV}", "nginx site as it was",
        f"restart unicorn from {PREV}"]
    script = plan.steps[1].outcome.scripts[0]
    assert script.stdin == b"the site before"
    assert script.text.endswith(f"nginx -t -q && {commands.nginx_reload()}")
    # its nginx step failed (the reload did not happen): the file only, no reload to fail
    r = run_of(d, applied=["nginx site", "switch", "unicorn", "nginx!"], restarted=True)
    r.facts.raw["texts"][d.paths.nginx_site] = "the site before"
    plan = activate.revert_plan(d, r, leaving_gems=d.digests.gems)
    assert plan.steps[1].outcome.scripts[0].text.endswith("nginx -t -q")
    assert "restart unicorn" in plan.steps[2].outcome.what


def test_a_handover_that_never_took_over_only_moves_current_back(d):
    r = run_of(d, applied=["switch", "unicorn"], restarted=False)
    assert [s[:2] for s in steps(activate.revert_plan(d, r))] == [
        ("revert", "Change"), ("verify", "Check")]


def test_a_first_deploy_has_nothing_to_go_back_to(d):
    r = run_of(d, applied=["switch", "unicorn"], restarted=True)
    r.facts.raw["current"] = None
    assert activate.revert_plan(d, r) is None


def switching(puma, d, applied):
    """A puma stage's run that was switching a host from unicorn (still running) to puma."""
    f = deployed(d, PREV)  # the host as the unicorn stage left it
    f.raw["units"][puma.paths.unit_name] = {"active": "inactive", "enabled": "", "load": "",
                                            "main_pid": "0"}
    return run_of(puma, applied=applied, restarted=True, facts=f)


@pytest.mark.parametrize("applied, site", [
    (["puma config", "puma unit", "nginx site", "puma"], "nginx site back on unicorn"),
    (["puma config", "puma unit", "nginx site", "puma", "nginx"], "nginx site back on unicorn"),
    (["puma config", "puma unit"], None),
])
def test_a_failed_switch_puts_nginx_back_on_the_server_that_kept_running(puma, d, applied,
                                                                        site):
    """Not a restart of the server that failed (it would fail again, and the one serving
    before still runs): the site as it was, the new server removed, the old one read."""
    r = switching(puma, d, applied)
    plan = activate.revert_plan(puma, r, leaving_gems=puma.digests.gems)
    assert steps(plan) == [
        *([("revert", "Change", site)] if site else []),
        ("revert", "Change", "stop and remove shop-puma.service (the switch to puma is "
                             "undone)"),
        ("release", "Check", f"unicorn runs releases/{PREV}"),
        ("verify", "Check", "/, /up and an asset answer 200 through nginx"),
    ]
    if site:
        script = plan.steps[0].outcome.scripts[0]
        assert script.stdin == d.files["site"].encode()  # unicorn's site, as read
        assert script.text.endswith("nginx -t -q" + (f" && {commands.nginx_reload()}"
                                                      if "nginx" in applied else ""))


def test_a_switch_that_retired_the_old_server_is_reverted_like_a_restart(puma, d):
    r = switching(puma, d, ["puma", "nginx", "verify", "retire unicorn"])
    assert ("revert", "Change", f"restart puma from {PREV}") in steps(
        activate.revert_plan(puma, r))


class Stub(Unicorn):
    """Unicorn's restart semantics, with the host's answer given."""

    def __init__(self, base: Unicorn, exited: int | None) -> None:
        self.__dict__.update(base.__dict__)
        self.exited = exited

    def restart(self, conn, *, mode, step, on_line=None) -> str:
        if self.exited is None:
            return "handed over"
        err = RailsfabError("restart failed", step=step)
        err.exited = self.exited
        raise err

    def wait_serving(self, conn, *, step, on_line=None) -> int:
        return 5


@pytest.mark.parametrize("exited, restarted", [
    (None, True),  # handed over: the server runs the new release, a revert must restart it
    (4, False),    # the new master died: the old one keeps serving as it was
    (5, False),    # its workers never came up: the old master keeps serving
    (6, True),     # the old master did not quit: the new one serves already
    (9, True),     # the new master runs another release than `current`
    (255, True),   # the connection was lost: nothing known, assume changed
])
def test_whether_a_restart_changed_the_server_follows_the_scripts_exit_status(
        d, exited, restarted):
    server = Stub(d.server, exited)
    r = run_of(d)
    run = runs.handover(server, "usr2", False)
    if exited is None:
        run(r)
    else:
        with pytest.raises(RailsfabError):
            run(r)
    assert r.restarted is restarted
    assert r.restart_failed is (restarted and exited is not None)


def with_release(f, rid, gems):
    f.raw["releases"][rid] = {**f.raw["releases"][PREV], "id": rid, "gems": gems}
    return f


@pytest.mark.parametrize("gems, mode", [("same", "phased"), ("other", "hot")])
def test_puma_rollback_is_phased_unless_the_gems_differ(puma, gems, mode):
    f = deployed(puma, PREV)
    older = "20261120000000"
    with_release(f, older, f.current_meta["gems"] if gems == "same" else "0" * 64)
    plan = releases.rollback_plan(puma, f, older)
    assert isinstance(plan.get("puma"), Change)
    assert plan.get("puma").what == f"{mode} restart of puma from {older}"


def test_unicorn_rollback_hands_over_with_usr2(d):
    f = with_release(deployed(d, PREV), "20261120000000", "0" * 64)
    assert releases.rollback_plan(d, f, "20261120000000").get("unicorn").what == \
        "usr2 restart of unicorn from 20261120000000"
