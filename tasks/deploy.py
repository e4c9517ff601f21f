"""fab deploy: the app on every web host, behind nginx and the stage's app server."""

from __future__ import annotations

from railsfab.report import Reporter
from tasks._boundary import ONLY_HELP, STAGE_HELP, command, load_stage


@command(name="deploy", help={
    "stage": STAGE_HELP,
    "only": ONLY_HELP,
    "dry_run": "read the hosts and print what would change (diffs included); change nothing",
})
def deploy(c, stage=None, only=None, dry_run=False):
    """Deploy the app: packages, release, assets, migrations, app server, nginx; verify."""
    from railsfab.deploy import deploy as run_deploy

    inv = load_stage(stage)
    app = inv.stage.app
    rep = Reporter()
    names = [h.name for h in inv.hosts(role="web", only=only)]
    mode = " (dry run: nothing is changed)" if dry_run else ""
    rep.info(f"[bold]deploy[/] {app.name} to stage {inv.stage_name}: {', '.join(names)}{mode}")
    try:
        run_deploy(inv, rep, only=only, dry_run=dry_run)
    finally:
        rep.recap("deploy")
    n = rep.changed_count
    if dry_run:
        rep.info(f"{n} would change" if n else "nothing would change")
        return
    rep.info(f"{n} changed" if n else "0 changed: everything was already in place")
    from railsfab.outputs import users_url

    url = users_url(inv)
    if url:
        rep.info(f"  users: {url}")
    port = "" if app.http_port == 80 else f":{app.http_port}"
    hosts = [f"http://{h.address}{port}/" for h in inv.hosts(role="web", only=only)]
    rep.info(("  hosts (plain HTTP, for the ALB): " if url else "  ") + " ".join(hosts))
