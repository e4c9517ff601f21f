"""fab deploy: the app on every web host, behind nginx + unicorn."""

from __future__ import annotations

from railsfab.deploy import Deployer
from railsfab.report import Reporter
from tasks._boundary import STAGE_HELP, command, load_stage


@command(name="deploy", help={
    "stage": STAGE_HELP,
    "only": "comma-separated host names (default: every web host)",
    "dry_run": "read the hosts and print what would change (diffs included); change nothing",
})
def deploy(c, stage=None, only=None, dry_run=False):
    """Deploy the app: packages, release, assets, migrations, unicorn, nginx; verify."""
    inv = load_stage(stage)
    rep = Reporter()
    deployer = Deployer(inv, rep, only=only, dry_run=dry_run)
    mode = " (dry run: nothing is changed)" if dry_run else ""
    rep.info(f"[bold]deploy[/] {inv.stage.app.name} to stage {inv.stage_name}: "
             f"{', '.join(h.name for h in deployer.hosts)}{mode}")
    try:
        deployer.run()
    finally:
        deployer.close()
        rep.recap("deploy")
    n = rep.changed_count
    if dry_run:
        rep.info(f"{n} would change" if n else "nothing would change")
    else:
        rep.info(f"{n} changed" if n else "0 changed: everything was already in place")
        app = deployer.app
        port = "" if app.http_port == 80 else f":{app.http_port}"
        for h in deployer.hosts:
            rep.info(f"  http://{h.address}{port}/")
