"""`fab restart-app`: a verified zero-downtime restart of the stage's app server on every web
host, through the same publish path as a deploy (batches through the target group, each host
verified through nginx before it rejoins)."""

from __future__ import annotations

from railsfab import facts
from railsfab.errors import RailsfabError
from railsfab.executor import Executor
from railsfab.inventory import Inventory
from railsfab.ops import activate, runs
from railsfab.ops.base import Change, Plan, Planned
from railsfab.ops.desired import Serving
from railsfab.publish import Publication, gate, publish
from railsfab.releases import same_app_user
from railsfab.report import Reporter
from railsfab.session import Session


def restart_plan(s: Serving, *, mode: str | None, hard: bool) -> Plan:
    server = s.server
    if hard:
        change = Change(f"stop and start {server.paths.unit_name} (--hard: a short gap)",
                        run=runs.systemctl(server, "restart", False),
                        done="stopped and started (--hard)")
    else:
        mode = mode or server.modes[0]
        change = Change(f"{mode} restart", run=runs.handover(server, mode, False),
                        gapless=activate.gapless(mode))
    return Plan([Planned(server.name, change), Planned("verify", activate.verified(None, s))])


def restart(inv: Inventory, rep: Reporter, *, only: str | None, hot: bool = False,
            hard: bool = False, command: str = "fab restart-app",
            require: str | None = None) -> None:
    s = Serving.of(inv.stage)
    if require and s.server.name != require:
        raise RailsfabError(f"stage {inv.stage_name} runs {s.server.name}, not {require}",
                            step=command.removeprefix("fab "),
                            fix=f"fab restart-app --stage {inv.stage_name}")
    mode = "hot" if hot and "hot" in s.server.modes else None
    with Session(inv, rep, only=only, command=command) as session:
        session.open(facts.Spec(user=s.app.deploy_user, units=(s.paths.unit_name,)),
                     target_group=True)
        same_app_user(s, list(session.runs.values()), command)
        plans = {name: restart_plan(s, mode=mode, hard=hard) for name in session.runs}
        # A failed restart changes no release: going back means checking that it serves.
        check = gate(s)
        publish(Publication(session, Executor(rep), plans, revert=check, gate=check,
                            change=None))
