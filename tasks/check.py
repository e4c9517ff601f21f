"""fab check: each web host's layers, and the first broken one with its evidence and fix."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from invoke import Exit
from rich.table import Table

from railsfab import diagnose, remote, rolling
from railsfab.errors import RailsfabError
from railsfab.paths import Paths
from railsfab.report import Reporter
from tasks._boundary import STAGE_HELP, command, load_stage

STYLE = {"ok": "green", "FAIL": "bold red", "skip": "dim"}


@command(name="check", help={"stage": STAGE_HELP,
                             "only": "comma-separated host names (default: every web host)",
                             "json": "print the verdicts as JSON (for scripts)"})
def check(c, stage=None, only=None, json=False):
    """Check every layer of each web host; name the first broken one and how to fix it."""
    inv = load_stage(stage, stderr=json)
    app = inv.stage.app
    paths = Paths.of(app)
    hosts = inv.hosts(role="web", only=only)
    s3 = diagnose.s3_round_trip(inv) if inv.stage.aws.bucket else None
    tg = rolling.TargetGroup(inv) if (inv.stage.aws.stack_name or
                                      inv.stage.aws.target_group_arn) else None
    health = tg.health() if tg is not None and tg.configured else None

    def one(host) -> list[diagnose.Verdict]:
        try:
            conn = remote.open_checked(inv, host)
        except RailsfabError as exc:
            return [diagnose.Verdict("network", "FAIL", exc.message, exc.fix or "")]
        try:
            data = diagnose.probe(conn, inv, paths)
        finally:
            conn.close()
        lb = None
        if health is not None:
            tid = tg.target(host)["Id"]
            lb = {"id": tid, "state": health.get(tid, "not registered")}
        return diagnose.evaluate(data, workers=app.workers, deploy_user=app.deploy_user,
                                 health=app.health_path, https=inv.stage.https,
                                 paths=paths, s3=s3, lb=lb)

    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        results = dict(zip([h.name for h in hosts], pool.map(one, hosts), strict=True))
    broken = {h: diagnose.first_broken(vs) for h, vs in results.items()}
    if json:
        print(diagnose.as_json(results))
    else:
        rep = Reporter()
        for host, verdicts in results.items():
            table = Table(title=host, title_justify="left")
            for col in ("layer", "status", "detail"):
                table.add_column(col)
            for v in verdicts:
                table.add_row(v.layer, f"[{STYLE[v.status]}]{v.status}[/]", v.detail)
            rep.console.print(table)
            b = broken[host]
            if b:
                rep.console.print(f"[bold red]✗ {host}: first broken layer: {b.layer}[/]\n"
                                  f"  {b.detail}\n  fix: {b.fix}")
            else:
                rep.console.print(f"[green]✓ {host}: all layers healthy[/]")
    if any(broken.values()):
        raise Exit(code=1)
