"""`fab deploy` and `fab rails` repair what a failed run (or a crash loop) left on a host,
on real sandbox hosts (unicorn, no ALB): each test breaks web1 by hand the way the failure
left it, runs the command a user would run next, checks that web1 serves again, and puts
back whatever it broke.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.conftest import run_fab
from tests.integration.test_deploy import APP_MARKER, asset_path, get, ssh

UNIT = "sample-unicorn.service"
ENV_FILE = "/etc/railsfab/sample.env"
CRASH = "/usr/local/lib/railsfab-test-crash.rb"


@pytest.fixture(scope="module")
def stage(stages):
    return stages.unicorn()


@pytest.fixture(scope="module")
def web1(inv):
    return next(h.address for h in inv.hosts(role="web") if h.name == "web1")


def wait_for(what, probe, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < end, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.3)


def serves_the_app(sandbox, address: str) -> None:
    status, _, body = get(address, "/")
    assert status == 200 and APP_MARKER in body, (status, body[:300])
    assert get(address, asset_path(sandbox, "web1", "application-*.css"))[0] == 200


def test_deploy_reloads_an_nginx_that_never_loaded_the_site_on_disk(stage, sandbox, web1):
    """A first deploy that failed after `nginx site` wrote and enabled the site (and removed
    Debian's default) but before the `nginx` step reloaded: nginx still serves the welcome
    page. Here nginx is made to load the default site, then the disk is put as that run
    left it, without a reload."""
    site, enabled = "/etc/nginx/sites-available/sample", "/etc/nginx/sites-enabled/sample"
    default = "/etc/nginx/sites-enabled/default"
    try:
        ssh(sandbox, "web1", f"sudo ln -sfn /etc/nginx/sites-available/default {default} && "
            f"sudo rm {enabled} && sudo systemctl reload nginx")
        wait_for("nginx serves the welcome page", lambda: "Welcome to nginx" in get(web1, "/")[2])
        time.sleep(1)  # what the failed run wrote came later than what nginx read
        ssh(sandbox, "web1", f"sudo rm {default} && sudo ln -s {site} {enabled}")
        assert "Welcome to nginx" in get(web1, "/")[2]
        r = run_fab(stage, "deploy")
        out = r.stdout + r.stderr
        assert r.returncode == 0, out
        assert re.search(r"web1\s+changed\s+nginx\s.*reloaded \(the running nginx read its "
                         r"config before .*/etc/nginx/sites-enabled\b", out), out
        assert re.search(r"web1\s+ok\s+nginx site\s", out), out  # the disk was right already
        assert re.search(r"web2\s+ok\s+nginx\s.*serves the config on disk", out), out
        serves_the_app(sandbox, web1)
        again = run_fab(stage, "deploy")  # and once read, a deploy is a no-op again
        assert again.returncode == 0, again.stdout + again.stderr
        assert not re.search(r"\schanged\s", again.stdout.replace("0 changed", "")), \
            again.stdout
    finally:
        ssh(sandbox, "web1", f"sudo rm -f {default} && sudo ln -sfn {site} {enabled} && "
            "sudo systemctl reload nginx")


def unit_state(sandbox) -> str:
    return ssh(sandbox, "web1", f"systemctl show -p ActiveState --value {UNIT}")


def test_deploy_repairs_a_crash_looping_app_server(stage, sandbox, web1):
    """The env file lost what the app needs (here: it loads a file that fails the boot after
    30 s, as a slow-booting app that cannot start does): unicorn crash-loops. `fab deploy`
    writes the env file back and must start the server from it, not join the start job
    that boots with the broken environment and fails."""
    try:
        ssh(sandbox, "web1", f"printf 'sleep 30\\nraise \"a setting the app needs is "
            f"missing\"\\n' | sudo tee {CRASH} >/dev/null && sudo chmod 644 {CRASH} && "
            f"echo 'RUBYOPT=-r{CRASH}' | sudo tee -a {ENV_FILE} >/dev/null && "
            f"sudo systemctl restart --no-block {UNIT}")
        wait_for("unicorn is booting with the broken env",
                 lambda: unit_state(sandbox) == "activating")
        assert get(web1, "/")[0] == 502
        started = time.monotonic()
        r = run_fab(stage, "deploy")
        out = r.stdout + r.stderr
        assert r.returncode == 0, out
        assert re.search(r"web1\s+changed\s+env file\s", out), out
        assert re.search(r"web1\s+changed\s+unicorn\s.*started sample-unicorn.service \(it was "
                         r"(activating|failed): its start job stopped and reset first\)", out), out
        assert time.monotonic() - started < 90  # it did not wait out the failing boot
        assert unit_state(sandbox) == "active"
        serves_the_app(sandbox, web1)
    finally:
        ssh(sandbox, "web1", f"sudo rm -f {CRASH} && sudo sed -i '/^RUBYOPT=/d' {ENV_FILE} && "
            f"(systemctl is-active -q {UNIT} || (sudo systemctl stop {UNIT}; "
            f"sudo systemctl reset-failed {UNIT}; sudo systemctl start {UNIT}))")


def test_rails_assets_precompile_writes_assets_nginx_can_read(stage, sandbox, web1):
    """`fab rails -- assets:precompile` runs like the app (umask 0027); what it writes into
    public/ is then opened up to nginx, as the deploy's own assets step does."""
    assets = "/srv/sample/current/public/assets"
    as_deploy = "sudo runuser -u deploy -- sh -c"
    try:
        ssh(sandbox, "web1", f"{as_deploy} 'rm -rf {assets}'")  # so precompile writes them
        r = run_fab(stage, "rails", "--only", "web1", "--", "assets:precompile")
        assert r.returncode == 0, r.stdout + r.stderr
        # written privately (the command's umask), readable by nginx (www-data) afterwards
        assert ssh(sandbox, "web1", f"sudo find {assets} -newer /srv/sample/current/Gemfile "
                   "-type f | head -1") != ""
        assert ssh(sandbox, "web1", f"sudo -u www-data find {assets} ! -readable | wc -l") \
            == "0"
        serves_the_app(sandbox, web1)
    finally:
        ssh(sandbox, "web1", f"{as_deploy} 'chmod -R o+rX /srv/sample/current/public'")
