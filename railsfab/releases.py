"""The release ledger on each host, and `fab rollback`.

Each release carries `.railsfab-release.json`: `prepared` once uploaded and built, `good`
once its verification passed on every host of the deploy. Releases of a deploy that
failed are moved to `releases-failed/` (kept for inspection), so neither cleanup nor
rollback can ever pick them. Rollback goes to the newest good release older than the
current one (or `--to ID`) through the same publish path as a deploy: in batches through
the target group, verified, reverted when its verification fails.
"""

from __future__ import annotations

from dataclasses import dataclass

from railsfab import facts
from railsfab.errors import RailsfabError
from railsfab.executor import Executor
from railsfab.inventory import Inventory
from railsfab.ops import activate, runs
from railsfab.ops.base import Change, Plan, Planned
from railsfab.ops.desired import Serving
from railsfab.publish import Publication, gate, publish
from railsfab.report import Reporter
from railsfab.session import Session


@dataclass
class Release:
    id: str
    state: str
    current: bool


def ledger(f: facts.Facts) -> list[Release]:
    return [Release(rid, meta.get("state", "unknown"), rid == f.current)
            for rid, meta in sorted(f.releases.items())]


def rollback_target(f: facts.Facts, to: str | None) -> str:
    rels = ledger(f)
    if to:
        chosen = next((r for r in rels if r.id == to), None)
        if chosen is None:
            raise RailsfabError(f"no release {to}; releases: {', '.join(r.id for r in rels)}",
                                step="rollback", fix="pick an id from `fab releases`")
        if chosen.state != "good":
            raise RailsfabError(f"release {to} is {chosen.state}, not good", step="rollback",
                                fix="roll back only to a release that passed verification")
        return to
    older = [r for r in rels if r.state == "good" and f.current and r.id < f.current]
    if not older:
        raise RailsfabError(f"no good release older than {f.current or '(none)'}",
                            step="rollback", state="current unchanged",
                            fix="see `fab releases`; deploy a fixed version instead")
    return older[-1].id


def spec(s: Serving) -> facts.Spec:
    return facts.Spec(user=s.app.deploy_user, units=(s.paths.unit_name,))


def same_app_user(s: Serving, runs: list, command: str) -> None:
    """A restart keeps the unit as it is: on a host whose unit still runs the app as another
    user (railsfab before app.app_user), only a deploy moves it (its processes, signals and
    logs are that user's)."""
    for r in runs:
        user = r.facts.unit(s.paths.unit_name).get("user") if r.facts else None
        if user and user != s.app.run_user:
            raise RailsfabError(
                f"{s.paths.unit_name} runs the app as {user}, not {s.app.run_user} "
                "(app.app_user)", host=r.name, step=command.removeprefix("fab "),
                state="nothing was changed",
                fix="`fab deploy` moves it to its own user (host by host, drained first)")


def list_releases(inv: Inventory, only: str | None) -> dict[str, list[Release]]:
    with Session(inv, Reporter(quiet=True), only=only, command="fab releases",
                 locking=False) as session:
        session.open(spec(Serving.of(inv.stage)))
        return {r.name: ledger(r.facts) for r in session.runs.values()}


def rollback_plan(s: Serving, f: facts.Facts, target: str) -> Plan:
    # Zero-downtime as a deploy would restart: puma's phased restart unless the release
    # rolled back to has other gems (then hot); unicorn's USR2 either way.
    mode = s.server.restart_mode(gems_changed=_gems(f, target) != f.current_meta.get("gems"),
                                 config_changed=False)
    return Plan([
        Planned("switch", activate.switch_to(s, target)),
        Planned(s.server.name, Change(f"{mode} restart of {s.server.name} from {target}",
                                      run=runs.handover(s.server, mode, False),
                                      gapless=activate.gapless(mode))),
        Planned("verify", activate.verified(f, s)),
    ])


def _gems(f: facts.Facts, release: str) -> str | None:
    """The gems digest release `release` was built with (None: not known, as if changed)."""
    meta = f.releases.get(release)
    return meta.get("gems") if isinstance(meta, dict) else None


def rollback(inv: Inventory, rep: Reporter, *, only: str | None, to: str | None) -> None:
    s = Serving.of(inv.stage)
    with Session(inv, rep, only=only, command="fab rollback") as session:
        session.open(spec(s), target_group=True)
        same_app_user(s, list(session.runs.values()), "fab rollback")
        # every host checked before any changes
        targets = {r.name: rollback_target(r.facts, to) for r in session.runs.values()}
        for r in session.runs.values():
            with rep.step(r.name, "ledger") as step:
                step.ok(f"current {r.facts.current}, rolling back to {targets[r.name]}")
        plans = {r.name: rollback_plan(s, r.facts, targets[r.name])
                 for r in session.runs.values()}
        publish(Publication(session, Executor(rep), plans,
                            revert=lambda r: activate.revert_plan(
                                s, r, leaving_gems=_gems(r.facts, targets[r.name])),
                            gate=gate(s),
                            change="the release rolled back to"))
