"""railsfab.rollout.order: who goes first, who stays in service, who leaves the target group."""

from __future__ import annotations

from railsfab import rollout
from railsfab.inventory import Rollout
from railsfab.ops.base import Change, Check, NoChange, Plan, Planned


def handover() -> Plan:
    return Plan([Planned("release", Change("create release", disturbs=False)),
                 Planned("switch", Change("point current", gapless=True)),
                 Planned("unicorn", Change("hand over (new release; usr2)", gapless=True)),
                 Planned("verify", Check("/ answers", run=lambda r: ""))])


def restart() -> Plan:
    return Plan([Planned("env file", Change("write env", disturbs=False)),
                 Planned("unicorn", Change("restart (env file changed; full restart)"))])


def idle() -> Plan:
    return Plan([Planned("unicorn", NoChange("running"))])


def hosts(n: int, make=handover) -> dict[str, Plan]:
    return {f"web{i}": make() for i in range(1, n + 1)}


def test_handovers_stay_in_service_canary_first_then_the_rest_at_once():
    o = rollout.order(hosts(8), {f"web{i}" for i in range(1, 9)}, Rollout(), 2)
    assert o.canary == "web1" and o.bake == 10
    assert o.compare == [f"web{i}" for i in range(2, 9)]
    assert o.waves == [[f"web{i}" for i in range(2, 9)]]
    assert o.batches == [] and o.joining == []
    said = rollout.describe(o, Rollout())
    assert said.startswith("canary web1 (out of the target group for its activation and gate),"
                           " then bakes up to 10 s (or 500 requests) judged by its traffic "
                           "against web2 … web8 (7)")
    assert "then web2 … web8 (7) at once, in service" in said


def test_waves_when_set():
    o = rollout.order(hosts(8), None, Rollout(wave=3), 1)
    assert o.waves == [["web2", "web3", "web4"], ["web5", "web6", "web7"], ["web8"]]


def test_a_disruptive_plan_leaves_the_target_group_in_batches_with_its_reason():
    plans = {**hosts(2), "web3": restart(), "web4": restart(), "web5": restart()}
    o = rollout.order(plans, set(plans), Rollout(), 2)
    assert o.canary == "web1" and o.waves == [["web2"]]
    assert o.batches == [["web3", "web4"], ["web5"]]
    said = rollout.describe(o, Rollout())
    assert "web3, web4 out of the target group (web3: unicorn; web4: unicorn)" in said


def test_a_disruptive_canary_is_chosen_only_when_no_plan_only_hands_over():
    o = rollout.order(hosts(3, restart), {"web1", "web2", "web3"}, Rollout(), 1)
    assert o.canary == "web1"
    assert o.batches == [["web2"], ["web3"]] and o.waves == []
    plans = {"web1": restart(), "web2": handover()}
    assert rollout.order(plans, {"web1", "web2"}, Rollout(), 1).canary == "web2"


def test_hosts_not_in_service_join_with_the_rest_and_are_registered_after():
    o = rollout.order(hosts(4, restart), {"web1"}, Rollout(), 1)
    assert o.canary == "web1" and o.joining == ["web2", "web3", "web4"]
    assert o.waves == [["web2", "web3", "web4"]] and o.batches == []
    assert o.compare == []  # nothing else serves: judged by its own 5xx alone


def test_fresh_fleet_no_canary_all_at_once():
    o = rollout.order(hosts(4, restart), set(), Rollout(), 1)
    assert o.canary is None and o.waves == [["web1", "web2", "web3", "web4"]]


def test_no_canary_no_bake_for_a_restart_or_when_switched_off():
    assert rollout.order(hosts(3), None, Rollout(), 1, bake=False).bake == 0
    assert rollout.order(hosts(3), None, Rollout(bake=0), 1).bake == 0
    o = rollout.order(hosts(3), None, Rollout(canary=False), 1)
    assert o.canary is None and o.waves == [["web1", "web2", "web3"]]


def test_one_host_or_nothing_changing_has_no_rollout_line():
    one = rollout.order(hosts(1), None, Rollout(), 1)
    assert one.canary is None and rollout.describe(one, Rollout()) is None
    plans = {"web1": handover(), "web2": idle()}
    o = rollout.order(plans, None, Rollout(), 1)
    assert o.steady == ["web2"] and o.canary is None
    assert rollout.describe(o, Rollout()) is None
