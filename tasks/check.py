"""fab check: each web host's layers, and the first broken one with its evidence and fix."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING

from invoke import Exit
from rich.markup import escape
from rich.table import Table

from railsfab.errors import RailsfabError
from railsfab.report import Reporter
from railsfab.text import safe
from tasks._boundary import STAGE_HELP, command, load_stage

if TYPE_CHECKING:
    from railsfab import diagnose

STYLE = {"ok": "green", "warn": "yellow", "FAIL": "bold red", "skip": "dim",
         "not deployed": "yellow"}


@command(name="check", help={"stage": STAGE_HELP,
                             "only": "comma-separated host names (default: every web host)",
                             "json": "print the verdicts as JSON (for scripts)"})
def check(c, stage=None, only=None, json=False):
    """Check every layer of each web host; name the first broken one and how to fix it."""
    from railsfab import diagnose
    from railsfab.paths import Paths

    inv = load_stage(stage, stderr=json)
    app = inv.stage.app
    paths = Paths.of(app)
    hosts = inv.hosts(role="web", only=only)
    stage_db = stage_database(inv)

    def aws_side() -> tuple:
        """S3's round trip, each host's target health with AWS's reason and the instances'
        security groups: asked while the hosts are probed (boto3's import and AWS's answers
        overlap SSH's)."""
        from railsfab import outputs

        # A stack that lacks an output check reads fails the check in one line, never a
        # check that skips the load balancer as if the stage had none.
        out = outputs.required(inv) if inv.stage.aws.stack_name else None
        s3 = diagnose.s3_round_trip(inv) if inv.stage.aws.bucket else None
        targets, health = lb_health(inv, hosts, out)
        lbs = None
        if health is not None:
            lbs = {name: {"id": t["Id"], **health.get(t["Id"], {"state": "not registered"})}
                   for name, t in targets.items()}
        return s3, lbs, diagnose.security_groups(inv, hosts, out)

    with ThreadPoolExecutor(max_workers=len(hosts) + 2) as pool:
        aws, ours = pool.submit(aws_side), pool.submit(rendered, inv, paths)
        probed = dict(zip([h.name for h in hosts],
                          pool.map(partial(probe_host, inv, paths), hosts), strict=True))
        docs = {h: d for h, d in probed.items() if isinstance(d, dict)}
        # (AWS's answers matter only to a host that was probed)
        s3, lbs, sgs = aws.result() if docs else (None, None, None)
        expected, modes = ours.result()
    # what only the hosts together show: the per-host verdicts cannot see the others
    fleet = diagnose.same_assets(docs, inv.stage_name)
    results = {h: [d] if isinstance(d, diagnose.Verdict) else diagnose.evaluate(
        d, workers=app.workers, app_user=app.run_user, health=app.health_path,
        https=inv.stage.https, paths=paths, s3=s3, lb=lbs[h] if lbs else None, host=h,
        sg=None if sgs is None else sgs[h], expected=expected, modes=modes,
        stage_db=stage_db, fleet=fleet.get(h)) for h, d in probed.items()}
    bad = {h: diagnose.first_broken(vs) or diagnose.not_deployed(vs)
           for h, vs in results.items()}
    if json:
        print(diagnose.as_json(results))
    else:
        show(results, bad)
    if any(bad.values()):
        raise Exit(code=1)


def probe_host(inv, paths, host) -> dict | diagnose.Verdict:
    """The host's probe document, or the network layer's failure."""
    from railsfab import diagnose, remote

    try:
        conn = remote.open_checked(inv, host)
    except RailsfabError as exc:
        return diagnose.Verdict("network", "FAIL", exc.message, exc.fix or "")
    try:
        return diagnose.probe(conn, inv, paths)
    finally:
        conn.close()


def show(results: dict[str, list], bad: dict) -> None:
    """Each host's layers as a table, then its verdict."""
    rep = Reporter()
    for host, verdicts in results.items():
        table = Table(title=host, title_justify="left")
        for col in ("layer", "status", "detail"):
            table.add_column(col)
        for v in verdicts:
            # evidence is quoted text ("[emerg]", "[request-id]"), not markup
            table.add_row(v.layer, f"[{STYLE[v.status]}]{v.status}[/]", escape(safe(v.detail)))
        rep.console.print(table)
        rep.info(summary(host, verdicts, bad[host]))  # shown safe, as every line


def summary(host: str, verdicts: list[diagnose.Verdict], bad: diagnose.Verdict | None) -> str:
    """The host's verdict: healthy, not deployed, or the cause with its evidence and fix
    and the broken layers that follow from it."""
    warned = [v for v in verdicts if v.status == "warn"]
    if bad is None and warned:
        return f"[yellow]⚠ {host}: every layer works, with warnings[/]" + "".join(
            f"\n  {escape(v.layer)}: {escape(v.detail)}\n  fix: {escape(v.fix)}" for v in warned)
    if bad is None:
        return f"[green]✓ {host}: all layers healthy[/]"
    fix = f"  fix: {escape(bad.fix)}" if bad.fix else "  fix: none the evidence shows"
    if bad.status != "FAIL":
        return f"[yellow]○ {host}: {bad.status} yet[/]\n  {escape(bad.detail)}\n{fix}"
    then = [v.layer for v in verdicts if v.role == "consequence"]
    return (f"[bold red]✗ {host}: first broken layer: {bad.layer}[/]\n  {escape(bad.detail)}\n"
            f"{fix}"
            + (f"\n  then broken (consequences): {', '.join(then)}" if then else ""))


def rendered(inv, paths) -> tuple[dict | None, dict]:
    """What railsfab renders and the modes it sets: made while the hosts are probed."""
    return drift_expected(inv, paths), railsfab_modes(inv)


def drift_expected(inv, paths) -> dict | None:
    """What railsfab renders for the stage now (None when the templates cannot render: the
    check still runs, without drift warnings)."""
    from railsfab.diagnose.drift import expected

    try:
        return expected(inv, paths)
    except RailsfabError:
        return None


def railsfab_modes(inv) -> dict:
    """{folder: (owner, group, mode)} as fab deploy sets them: a fix puts exactly these back."""
    from railsfab.ops.desired import Serving
    from railsfab.ops.host import dirs

    return {path: (owner, group, mode) for path, owner, group, mode in
            dirs(Serving.of(inv.stage))}


def stage_database(inv) -> str:
    db = inv.stage.app.database
    return f"{db.host}:{db.port}" if db else ""


def lb_health(inv, hosts, out: dict | None = None) -> tuple[dict, dict | None]:
    """Each host's target and its health with AWS's reason, in one call; (_, None) when the
    stage has no target group (neither aws.stack_name nor aws.target_group_arn)."""
    from railsfab import rolling

    if not (inv.stage.aws.stack_name or inv.stage.aws.target_group_arn):
        return {}, None
    tg = rolling.TargetGroup(inv, out)
    targets = {h.name: tg.target(h) for h in hosts}
    return targets, tg.health_detail(list(targets.values()))
