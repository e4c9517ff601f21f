"""The one publish path: deploy, rollback and restart-app all put hosts into service this
way (Capistrano's `publishing` stage, run again for a rollback).

Every host was connected to, read and locked before (railsfab.session). Without a target
group, every host's activation plan runs at once. With one, in the order railsfab.rollout
gives: the canary first (drained for its activation and local gate, then baked under real
traffic when a release changes), then the hosts whose plan is a zero-downtime handover, in
service, at once (or in waves), then the hosts
whose plan disrupts, in batches: deregister (never the last healthy target) and drain -> the
plan (its verification is the local health gate) -> register and wait until healthy. When a
host fails (or the canary's traffic is worse than the others'), the roll stops; the failed
wave or batch is put back as it was, verified and in the target group, and hosts that
already took the change are reverted too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.markup import escape

from railsfab import rollout
from railsfab.errors import RailsfabError
from railsfab.executor import Executor, HostRun, parallel
from railsfab.ops.base import Plan
from railsfab.paths import Paths
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
        if pub.executor.dry:
            _say_rollout(pub)
        _all_at_once(pub)
    else:
        _roll(pub, tg)


def _bakes(pub: Publication) -> bool:
    """A release (not a restart) behind nginx, whose access log the bake reads (with
    `nginx: false` the app server answers clients itself: no log to judge the canary by)."""
    return pub.change is not None and pub.session.inv.stage.app.nginx


def _say_rollout(pub: Publication) -> None:
    """--dry-run: the rollout a stage with a target group would take (the target group is
    not asked: every host taken to be in service)."""
    stage = pub.session.inv.stage
    if not (stage.aws.target_group_arn or stage.aws.stack_name):
        return
    o = rollout.order(pub.plans, None, stage.rollout, stage.aws.batch_size,
                      bake=_bakes(pub))
    said = rollout.describe(o, stage.rollout)
    said = said or "at most one host changes what it serves: nothing to roll"
    pub.session.rep.info(escape(f"  rollout  {said}"))


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
    """Through the target group, in the order railsfab.rollout gives: the canary (baked
    under real traffic), then the rest in service at once (or in waves), then the hosts
    whose plan disrupts, in batches out of the target group."""
    runs = pub.session.runs
    stage = pub.session.inv.stage
    targets = {r.name: tg.target(r.host, r.conn, r.facts.instance_id if r.facts else None)
               for r in runs.values()}
    health = tg.health()
    in_service = {n for n, t in targets.items() if health.get(t["Id"]) == "healthy"}
    o = rollout.order(pub.plans, in_service, stage.rollout, stage.aws.batch_size,
                      bake=_bakes(pub))
    said = rollout.describe(o, stage.rollout)
    if said:
        pub.session.rep.info(escape(f"  rollout  {said}"))
    _steady(pub, tg, [runs[n] for n in o.steady], targets, health)
    done: list[HostRun] = []
    if o.canary:  # no client meets a release before its local gate passed
        canary = runs[o.canary]
        _batch(pub, tg, [canary], targets, done)
        done.append(canary)
        if o.bake:
            _bake(pub, tg, canary, [runs[n] for n in o.compare], targets[o.canary])
    for wave in o.waves:
        _in_place(pub, tg, [runs[n] for n in wave], targets, done, in_service)
        done += [runs[n] for n in wave]
    for names in o.batches:
        batch = [runs[n] for n in names]
        _batch(pub, tg, batch, targets, done)
        done += batch


def _steady(pub: Publication, tg: TargetGroup, steady: list[HostRun], targets: dict,
            health: dict) -> None:
    """Hosts whose plan changes nothing that serves: in the target group, after the local
    health gate when the ALB does not count them healthy."""
    if not steady:
        return
    if _activate(pub, steady):
        pub.session.raise_if_failed()
    for r in steady:
        t = targets[r.name]
        if health.get(t["Id"]) != "healthy":
            pub.executor.run(r, pub.gate(r))
        with pub.session.rep.step(r.name, "target") as s:
            if health.get(t["Id"]) == "healthy":
                s.ok(f"{t['Id']} healthy in the target group")
            else:
                tg.register([t])
                s.change(f"{t['Id']} registered, healthy")


def _in_place(pub: Publication, tg: TargetGroup, wave: list[HostRun], targets: dict,
              done: list[HostRun], in_service: set[str]) -> None:
    """A wave that stays in service (a zero-downtime handover; hosts not in service have
    nothing to lose): activated at once, the ones not in service registered after."""
    theirs = [targets[r.name] for r in wave]
    if _activate(pub, wave):
        _recover(pub, tg, wave, theirs, done)
    joining = [r for r in wave if r.name not in in_service]
    if joining:
        _register(pub, tg, joining, wave, theirs, done)


def _batch(pub: Publication, tg: TargetGroup, batch: list[HostRun], targets: dict,
           done: list[HostRun]) -> None:
    """A batch whose plan disrupts: deregistered and drained, activated, registered."""
    theirs = [targets[r.name] for r in batch]
    _deregister(tg, pub.session.rep, batch, targets)
    if _activate(pub, batch):
        _recover(pub, tg, batch, theirs, done)
    _register(pub, tg, batch, batch, theirs, done)


def _register(pub: Publication, tg: TargetGroup, joining: list[HostRun], batch: list[HostRun],
              theirs: list[dict], done: list[HostRun]) -> None:
    try:
        with pub.session.rep.step(_names(joining), "register") as s:
            tg.register([t for r, t in zip(batch, theirs, strict=True) if r in joining])
            s.change("healthy in the target group")
    except RailsfabError as exc:
        # It serves the change (verified here) but the ALB does not take it back: a
        # failure of the batch like any other, put back as it was.
        exc.host = _names(joining)
        for r in batch:
            r.error = exc
        _recover(pub, tg, batch, theirs, done)


def _bake(pub: Publication, tg: TargetGroup, canary: HostRun, others: list[HostRun],
          target: dict) -> None:
    """The canary serves real traffic before any other host takes the change; traffic
    worse than the others' stops the rollout there, the canary put back."""
    stage = pub.session.inv.stage
    try:
        with pub.session.rep.step(canary.name, "bake") as s:
            judged = rollout.bake(canary, others, stage.rollout, Paths.of(stage.app))
            if not judged.ok:
                raise RailsfabError(
                    "\n".join([f"the canary's traffic over the bake: {judged.said}",
                                *judged.evidence]), host=canary.name, step="bake",
                    fix=f"the new release answers worse than the release the other hosts "
                        f"serve: see the requests above in the app's log (`fab logs --stage "
                        f"{pub.session.inv.stage_name} --only {canary.name}`), fix, deploy "
                        "again")
            s.ok(judged.said)
    except RailsfabError as exc:
        exc.host = exc.host or canary.name
        canary.error = exc
        _recover(pub, tg, [canary], [target], [])


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
