"""The failure matrix's server switch (unicorn <-> puma, behind the ALB, under its load): a
release the new server cannot load. The server that served before never stopped: nginx goes
back to it, the new one is stopped and removed as if never started, every host serves the
release it served (read from the old server's processes), the target group lists both
healthy, no request fails; the same switch with the fault removed then completes."""

from __future__ import annotations

import pytest

from tests.conftest import run_fab
from tests.integration.matrix import WEB, Ctx, app_edit, under_alb_load
from tests.integration.test_deploy import ssh
from tests.integration.test_failure_matrix import PUT_BACK, failed_cleanly, serving

# A release the new server cannot serve: unicorn's master dies loading it (never boots);
# puma's workers answer 500 on / (a master that never boots waits out systemd's start
# timeout: the same revert, two minutes later).
FAULT = {
    "unicorn": ("config/initializers/zz_matrix.rb",
                'raise "failure matrix: unicorn cannot load" if $PROGRAM_NAME =~ /unicorn/\n',
                "unicorn", "unicorn cannot load"),
    "puma": ("app/views/layouts/application.html.erb",
             '<% raise "failure matrix: puma answers 500" if $PROGRAM_NAME =~ /puma/ %>\n',
             None, "puma answers 500"),
}


@pytest.fixture(scope="module")
def app(inv):
    return inv.resolve(inv.stage.app.source)


@pytest.mark.parametrize("old, new", [("unicorn", "puma"), ("puma", "unicorn")])
def test_failed_switch_leaves_the_old_server_serving(old, new, stages, app, sandbox, inv):
    start = stages.unicorn(alb=True) if old == "unicorn" else stages.puma(alb=True)
    to = stages.puma_file(alb=True) if new == "puma" else stages.unicorn_file(alb=True)
    before = serving(sandbox, inv, old)
    path, text, step, said = FAULT[new]
    with app_edit(path, text)(Ctx(app, to, sandbox, inv)) as stage:
        r, load = under_alb_load(inv, lambda: run_fab(stage, "deploy"))
    out = failed_cleanly(r, load, step=step or "verify", said=said, state=PUT_BACK)
    assert f"nginx site back on {old}" in out, out
    assert serving(sandbox, inv, old) == before, out
    for h in WEB:
        assert ssh(sandbox, h, f"systemctl show -p LoadState --value sample-{new}") \
            == "not-found", out
        site = ssh(sandbox, h, "cat /etc/nginx/sites-available/sample")
        assert f"sockets/{old}.sock" in site, site
    # the same switch, the fault gone, completes; back to where it started after
    r = run_fab(to, "deploy")
    assert r.returncode == 0, r.stdout + r.stderr
    serving(sandbox, inv, new)  # every new-server process runs `current`; both healthy
    assert run_fab(start, "deploy").returncode == 0
