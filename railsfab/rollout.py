"""The rollout policy behind a target group (hosts.yaml's `rollout:`): in which order the
hosts take a change, which of them leave the target group for it, and the canary's bake.

A USR2 or phased handover loses no request by itself: deregistering a host for it buys
nothing and costs a drain per batch. So one host, the canary, goes first: out of the target
group for its handover and local gate (a release that cannot boot or answers 500 on / never
meets a client), back in, then it serves real traffic for `rollout.bake` seconds while its
nginx access log is compared with the other hosts' over the same window; then the hosts
whose plan only hands over go at once (or in waves of `rollout.wave`), in service. A host
whose plan disrupts (a full restart, a server switch, nginx's site or a start) leaves the
target group for it, in batches of `aws.batch_size`, drained first. A host not in service
(a fresh one, one the ALB counts unhealthy) has nothing to lose: it goes with the rest and
is registered after.

Capistrano switches every host at once, Kamal one at a time; neither looks at traffic.
`order()` is pure (plans and target health in, the order out): --dry-run prints it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from railsfab.inventory import Rollout
from railsfab.ops.base import Plan


@dataclass
class Order:
    steady: list[str] = field(default_factory=list)  # nothing that serves changes
    canary: str | None = None  # out of the target group for its activation, then baked
    bake: float = 0.0  # seconds the canary serves before the rest follow (0: no bake)
    compare: list[str] = field(default_factory=list)  # the hosts its traffic is judged against
    waves: list[list[str]] = field(default_factory=list)  # in service (or joining), at once
    batches: list[list[str]] = field(default_factory=list)  # out of the target group for it
    joining: list[str] = field(default_factory=list)  # not in service: registered after
    why: dict[str, list[str]] = field(default_factory=dict)  # a leaving host's disruptive steps


def order(plans: dict[str, Plan], in_service: set[str] | None, rollout: Rollout,
          batch_size: int, *, bake: bool = True) -> Order:
    """The rollout of `plans` (host -> activation plan, in host order). `in_service`: the
    hosts the target group counts healthy (None: not asked, as in a dry run: every host is
    taken to serve). `bake`: a change worth baking (a release; not a restart)."""
    names = list(plans)
    serving = set(names) if in_service is None else in_service
    rolling = [n for n in names if plans[n].disturbs]
    o = Order(steady=[n for n in names if not plans[n].disturbs])
    live = [n for n in rolling if n in serving]
    o.joining = [n for n in rolling if n not in serving]
    keeps = [n for n in live if not plans[n].disrupts]
    leaves = [n for n in live if plans[n].disrupts]
    o.why = {n: plans[n].disruptive_steps for n in leaves}
    if rollout.canary and live and len(rolling) > 1:
        o.canary = (keeps or leaves)[0]
        keeps = [n for n in keeps if n != o.canary]
        leaves = [n for n in leaves if n != o.canary]
        o.compare = [n for n in live if n != o.canary]
        if bake and rollout.bake > 0:
            o.bake = rollout.bake
    rest = keeps + o.joining
    size = rollout.wave or len(rest) or 1
    o.waves = [rest[i:i + size] for i in range(0, len(rest), size)]
    o.batches = [leaves[i:i + batch_size] for i in range(0, len(leaves), batch_size)]
    return o


def describe(o: Order, rollout: Rollout) -> str | None:
    """One line saying the rollout (None when at most one host changes what it serves)."""
    if sum(map(len, o.waves)) + sum(map(len, o.batches)) + (o.canary is not None) < 2:
        return None
    parts = []
    if o.canary:
        baked = (f", then bakes up to {o.bake:g} s (or {rollout.bake_requests} requests) "
                 f"judged by its traffic against {_span(o.compare)}") if o.bake else ""
        parts.append(f"canary {o.canary} (out of the target group for its activation and "
                     f"gate){baked}")
    for w in o.waves:
        joining = [n for n in w if n in o.joining]
        said = f"{_span(w)} at once, in service"
        if joining:
            said += f" ({_span(joining)} not in service yet: registered after)"
        parts.append(said)
    for b in o.batches:
        parts.append(f"{_span(b)} out of the target group ("
                     + "; ".join(f"{n}: {', '.join(o.why[n])}" for n in b) + ")")
    return "then ".join(p + "; " for p in parts).rstrip("; ")


def _span(names: list[str]) -> str:
    return ", ".join(names) if len(names) <= 4 else f"{names[0]} … {names[-1]} ({len(names)})"


def bake(canary, others: list, rollout: Rollout, paths, *, step: str = "bake"):
    """The canary serves for up to `rollout.bake` seconds (less once it has answered
    `rollout.bake_requests` requests), then its access log and the others' over the same
    window are read (one round trip each, at once) and judged: a railsfab.traffic
    Judgement."""
    from railsfab import traffic

    start = time.monotonic()
    while (waited := time.monotonic() - start) < rollout.bake:
        time.sleep(min(1.0, rollout.bake - waited))
        seen = traffic.read(canary.conn, paths, time.monotonic() - start, step=step)
        if seen.requests >= rollout.bake_requests:
            break
    window = time.monotonic() - start
    read = traffic.read_all([r.conn for r in (canary, *others)], paths, window, step=step)
    return traffic.judge(read[0], read[1:], rollout)
