"""The one publish path: deploy, rollback and restart-app all put hosts into service this
way (Capistrano's `publishing` stage, run again for a rollback).

Every host was connected to, read and locked before (railsfab.session). Without a target
group, every host's activation plan runs at once. With one, hosts whose plan disturbs nothing
stay in service, the others go in batches: deregister (never the last healthy target) and
drain -> the plan (switch, handover or restart; its verification is the local health gate)
-> register and wait until healthy. When a host fails, the roll stops; the failed batch is
put back as it was (a batch in which nothing had changed yet at once), verified and
registered again, and hosts that already took the change are reverted too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from railsfab.errors import RailsfabError
from railsfab.executor import Executor, HostRun, parallel
from railsfab.ops.base import Plan
from railsfab.rolling import TargetGroup
from railsfab.session import Session


@dataclass
class Publication:
    session: Session
    executor: Executor
    plans: dict[str, Plan]  # each host's activation plan
    # How to put a host back as it was after its plan ran (partly or wholly); None when
    # there is nothing to go back to (a first deploy).
    revert: Callable[[HostRun], Plan | None]
    # The local health gate of a host that rejoins the target group without a plan that
    # changed anything (it was out of it): verification through nginx.
    gate: Callable[[HostRun], Plan]
    # What a revert takes away ("the new release"), for messages. None: there is nothing to
    # take away from hosts that succeeded (a restart), which are then left as they are.
    change: str | None = "the new release"


def gate(s) -> Callable[[HostRun], Plan]:
    """The local health gate for the app `s` (an ops.desired.Serving): verify, always."""
    from railsfab.ops import activate
    from railsfab.ops.base import Planned

    return lambda r: Plan([Planned("verify", activate.verified(None, s, always=True))])


def publish(pub: Publication) -> None:
    tg = None if pub.executor.dry else pub.session.target_group()
    if tg is None:
        _all_at_once(pub)
    else:
        _roll(pub, tg)


def _activate(pub: Publication, runs: list[HostRun]) -> dict[str, RailsfabError]:
    return parallel(lambda r: pub.executor.run(r, pub.plans[r.name]), runs, "activate")


def _revert(pub: Publication, runs: list[HostRun]) -> list[str]:
    """Put each host back (in parallel); what could not be, one phrase per host."""
    plans = {r.name: pub.revert(r) for r in runs if r.applied}
    todo = [r for r in runs if plans.get(r.name) is not None]
    errors = parallel(lambda r: pub.executor.run(r, plans[r.name]), todo, "revert")
    return [f"{r.name} (nothing to go back to: its first release)" if plans.get(r.name) is None
            else r.name for r in runs if r.applied and (plans.get(r.name) is None
                                                       or r.name in errors)]


# The exit status of a command that left a host it could not put back (not serving what it
# served before): an operator must look at it, whatever else went well.
NOT_PUT_BACK = 3


def _all_at_once(pub: Publication) -> None:
    runs = list(pub.session.runs.values())
    if not _activate(pub, runs):
        return
    stuck = _revert(pub, runs)
    back = [r for r in runs if r.applied and r.name not in stuck]
    state = None
    if any(r.applied for r in runs):
        state = "; ".join(filter(None, (
            back and f"back on what they served before, verified: {_names(back)}",
            stuck and f"NOT put back: {', '.join(stuck)}")))
    try:
        pub.session.raise_if_failed(state=state)
    except RailsfabError as err:
        if stuck:
            err.exit_code = NOT_PUT_BACK
        raise


def _roll(pub: Publication, tg: TargetGroup) -> None:
    runs = list(pub.session.runs.values())
    rep = pub.session.rep
    targets = {r.name: tg.target(r.host, r.conn, r.facts.instance_id if r.facts else None)
               for r in runs}
    idle = [r for r in runs if not pub.plans[r.name].disturbs]
    busy = [r for r in runs if pub.plans[r.name].disturbs]
    if idle:
        if _activate(pub, idle):
            pub.session.raise_if_failed()
        health = tg.health()
        for r in idle:
            t = targets[r.name]
            if health.get(t["Id"]) != "healthy":
                pub.executor.run(r, pub.gate(r))
            with rep.step(r.name, "target") as s:
                if health.get(t["Id"]) == "healthy":
                    s.ok(f"{t['Id']} healthy in the target group")
                else:
                    tg.register([t])
                    s.change(f"{t['Id']} registered, healthy")
    done: list[HostRun] = []
    size = pub.session.inv.stage.aws.batch_size
    for i in range(0, len(busy), size):
        batch = busy[i:i + size]
        theirs = [targets[r.name] for r in batch]
        _deregister(tg, rep, batch, targets)
        if _activate(pub, batch):
            _recover(pub, tg, batch, theirs, done)
        try:
            with rep.step(_names(batch), "register") as s:
                tg.register(theirs)
                s.change("healthy in the target group")
        except RailsfabError as exc:
            # It serves the change (verified here) but the ALB does not take it back: a
            # failure of the batch like any other, put back as it was.
            exc.host = _names(batch)
            for r in batch:
                r.error = exc
            _recover(pub, tg, batch, theirs, done)
        done += batch


def _deregister(tg: TargetGroup, rep, batch: list[HostRun], targets: dict) -> None:
    ids = {targets[r.name]["Id"] for r in batch}
    health = tg.health()
    others_healthy = [t for t, s in health.items() if s == "healthy" and t not in ids]
    out = [targets[r.name] for r in batch if targets[r.name]["Id"] in health]
    with rep.step(_names(batch), "deregister") as s:
        if out and not others_healthy:
            s.ok("kept registered: it is the last healthy target (the handover keeps it "
                 "serving)")
        elif out:
            tg.deregister(out)
            for r in batch:  # a full restart there first waits for its last clients
                r.drained = tg.delay
            s.change(f"drained (deregistration delay {tg.delay} s)")
        else:
            s.ok("not registered yet")


def _recover(pub: Publication, tg: TargetGroup, batch: list[HostRun], targets: list[dict],
             done: list[HostRun]) -> None:
    """The batch failed: back as it was, verified, back in service; then the hosts that took
    the change before it are reverted too. Always raises the batch's error."""
    names = _names(batch)
    err = next(r.error for r in batch if r.error)
    touched = [r for r in batch if r.applied]
    stuck = _revert(pub, touched)
    if stuck:
        healthy = sorted(t for t, state in tg.health().items() if state == "healthy")
        err.state = (f"the roll stopped at {names}; NOT put back: {', '.join(stuck)}, left out "
                     "of the target group; it lists " + (
                         f"{len(healthy)} healthy: {', '.join(healthy)}" if healthy
                         else "no healthy target"))
        err.exit_code = NOT_PUT_BACK
        raise err
    err.state = (f"the roll stopped at {names}: "
                 + ("back on what it served before, verified" if touched else "nothing changed"))
    try:
        with pub.session.rep.step(names, "register") as s:
            tg.register(targets)
            s.change("back in the target group, on what it served before" if touched
                     else "back in the target group (nothing had changed on it)")
        err.state += " and back in the target group"
    except RailsfabError as again:
        err.state += f", but left out of the target group ({again.message})"
        err.exit_code = NOT_PUT_BACK
    if done and pub.change:
        stuck = _revert(pub, done)
        err.state += (f"; {_names(done)} reverted too" if not stuck
                      else f"; NOT put back: {', '.join(stuck)}")
        if stuck:
            err.exit_code = NOT_PUT_BACK
    if pub.change:
        err.state += f": no host runs {pub.change}"
    raise err


def _names(runs) -> str:
    return ", ".join(r.name for r in runs)
