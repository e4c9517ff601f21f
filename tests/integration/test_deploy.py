"""`fab deploy` on real sandbox hosts: fresh deploy, no-op re-deploy, a change, a failure.

The session's one fresh deploy (the slow part: packages) is read for its output; then the
hosts are brought to unicorn without the ALB, from the pristine sample app, and the tests
in this file build on each other in order.
"""

from __future__ import annotations

import re
import subprocess
import urllib.request

import pytest

from tests.conftest import run_fab

APP_MARKER = "railsfab sample app"


def get(address: str, path: str, host: str | None = None) -> tuple[int, dict, str]:
    req = urllib.request.Request(f"http://{address}{path}")
    if host:
        req.add_header("Host", host)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode(errors="replace")


def ssh(sandbox, host: str, cmd: str) -> str:
    r = subprocess.run(["ssh", "-F", str(sandbox.ssh_config), "-o", "BatchMode=yes", host, cmd],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def master_pid(sandbox, host: str) -> str:
    return ssh(sandbox, host, "sudo cat /srv/sample/shared/tmp/pids/unicorn.pid")


def current_release(sandbox, host: str) -> str:
    return ssh(sandbox, host, "readlink /srv/sample/current").rsplit("/", 1)[-1]


def asset_path(sandbox, host: str, pattern: str) -> str:
    name = ssh(sandbox, host, f"cd /srv/sample/current/public/assets && ls {pattern} | head -1")
    return f"/assets/{name}"


def serving_state(sandbox, web_hosts) -> tuple[dict, dict]:
    """Each web host's current release and unicorn master pid."""
    return ({h: current_release(sandbox, h) for h in web_hosts},
            {h: master_pid(sandbox, h) for h in web_hosts})


def deploy_edited(stage, path, addition: str):
    """`fab deploy` with `addition` appended to an app file, put back as it was after."""
    good = path.read_text()
    try:
        path.write_text(good + addition)
        return run_fab(stage, "deploy")
    finally:
        path.write_text(good)


@pytest.fixture(scope="module")
def deployed(fresh_deploy):
    return fresh_deploy


@pytest.fixture(scope="module")
def stage(stages):
    return stages.unicorn()


@pytest.fixture(scope="module")
def web_hosts(inv):
    return {h.name: h.address for h in inv.hosts(role="web")}


def test_fresh_deploy_serves_the_app_through_nginx_on_every_web_host(stage, sandbox,
                                                                      web_hosts):
    for name, address in web_hosts.items():
        status, _, body = get(address, "/")
        assert status == 200 and APP_MARKER in body, name
        # /up answers whatever the Host header (an ALB health check sends the IP).
        assert get(address, "/up", host="10.0.0.99")[0] == 200
        assert get(address, "/up", host="internal-alb-123.elb.amazonaws.com")[0] == 200
        for pattern in ("application-*.css", "logo-*.png"):
            status, headers, _ = get(address, asset_path(sandbox, name, pattern))
            assert status == 200
            assert "max-age=31536000" in headers["Cache-Control"]


def test_progress_shows_each_step_and_a_recap(deployed):
    out = deployed.stdout
    for step in ("packages", "release", "assets", "migrate", "nginx site", "switch",
                 "verify"):
        assert re.search(rf"web1\s+(ok|changed)\s+{step}\s+\d+\.\ds", out), step
    assert "deploy recap" in out
    assert re.search(r"web2\s+ok=\d+ changed=\d+ failed=0", out)


def test_assets_are_built_once_and_every_host_serves_the_same_digests(deployed, sandbox):
    """One host precompiles; the other unpacks what it built (no precompile, no node there),
    so a page from one host never asks another for an asset it lacks."""
    out = deployed.stdout
    assert re.search(r"web1\s+changed\s+assets\s.*once for the release", out), out
    assert re.search(r"web2\s+changed\s+assets\s.*from web1's build: no precompile here", out)
    manifest = ("sudo sh -c 'cat /srv/sample/current/public/assets/.sprockets-manifest-*.json' "
                "| sha256sum")
    assert ssh(sandbox, "web1", manifest) == ssh(sandbox, "web2", manifest)
    files = "sudo sh -c 'cd /srv/sample/current/public/assets && find . -type f | sort' | sha256sum"
    assert ssh(sandbox, "web1", files) == ssh(sandbox, "web2", files)
    assert deployed.precompiled == ["web1"]  # read right after that deploy
    assert ssh(sandbox, "web2", "command -v node nodejs || echo none") == "none"


def test_migrations_ran_once_on_the_migrate_host(deployed):
    lines = [ln for ln in deployed.stdout.splitlines() if re.search(r"\smigrate\s", ln)]
    assert len(lines) == 1 and lines[0].lstrip().startswith("web1")


def test_host_layout_permissions_and_secrets(deployed, stage, sandbox):
    # Debian's own unicorn.service is masked: nothing failed, the host is not "degraded".
    assert ssh(sandbox, "web1", "systemctl is-system-running") == "running"
    assert ssh(sandbox, "web1", "ls /etc/nginx/sites-enabled") == "sample"
    assert ssh(sandbox, "web1", "sudo stat -c '%U %a' /etc/railsfab/sample.env") == "root 600"
    # The app runs as its own user (app.app_user, the app's name), not the deploy user.
    users = ssh(sandbox, "web1", "ps -o user= -C ruby,unicorn | sort -u")
    assert users.split() == ["sample"]
    assert ssh(sandbox, "web1", "sudo stat -c '%U %G %a' /srv/sample/releases /srv/sample/shared "
               "/srv/sample/shared/log /srv/sample/shared/config").splitlines() == [
        "deploy deploy 711", "deploy deploy 711", "sample deploy 2770", "root deploy 750"]
    # nginx (www-data) may use the socket; other users cannot read the app's private files.
    assert ssh(sandbox, "web1", "sudo -u www-data test -r /srv/sample/current/public/500.html "
               "&& echo ok") == "ok"
    assert ssh(sandbox, "web1", "sudo -u nobody cat /srv/sample/current/config/database.yml "
               ">/dev/null 2>&1 || echo denied") == "denied"
    # The secrets never reached the deploy log or a command line.
    secret = ssh(sandbox, "web1", "sudo sed -n 's/^SECRET_KEY_BASE=.\\(.*\\).$/\\1/p' "
                 "/etc/railsfab/sample.env")
    assert len(secret) >= 64 and secret not in deployed.stdout + deployed.stderr


def test_second_deploy_changes_nothing_and_restarts_nothing(deployed, sandbox, stage):
    before = {h: master_pid(sandbox, h) for h in ("web1", "web2")}
    r = run_fab(stage, "deploy")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 changed" in r.stdout
    assert not re.search(r"\schanged\s", r.stdout.replace("0 changed", ""))
    assert {h: master_pid(sandbox, h) for h in ("web1", "web2")} == before


def test_dry_run_shows_the_diff_and_changes_nothing(deployed, sandbox, stage, inv):
    site = "/etc/nginx/sites-available/sample"
    ssh(sandbox, "web2", f"sudo sed -i 's/client_max_body_size .*;/client_max_body_size 1m;/' "
        f"{site}")
    r = run_fab(stage, "deploy", "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "-    client_max_body_size 1m;" in r.stdout
    assert "+    client_max_body_size 25m;" in r.stdout
    assert re.search(r"web2\s+changed\s+nginx site", r.stdout)
    assert "client_max_body_size 1m;" in ssh(sandbox, "web2", f"cat {site}")  # untouched
    fixed = run_fab(stage, "deploy")  # and a real run converges it
    assert fixed.returncode == 0 and re.search(r"web2\s+changed\s+nginx site", fixed.stdout)


def test_changed_view_is_served_as_a_new_release(deployed, sandbox, stage, inv,
                                                 web_hosts):
    app = inv.resolve(inv.stage.app.source)
    view = app / "app/views/photos/index.html.erb"
    view.write_text(view.read_text() + "\n<p>release two</p>\n")
    before = current_release(sandbox, "web1")
    r = run_fab(stage, "deploy")
    assert r.returncode == 0, r.stdout + r.stderr
    assert current_release(sandbox, "web1") != before
    # Only the view changed: gems and assets are reused, migrations skipped.
    assert re.search(r"web1\s+ok\s+assets\s.*reused", r.stdout)
    assert re.search(r"web1\s+ok\s+migrate\s.*unchanged", r.stdout)
    for address in web_hosts.values():
        assert "release two" in get(address, "/")[2]


def test_failing_precompile_keeps_the_old_release_serving(deployed, sandbox, stage, inv,
                                                          web_hosts):
    css = inv.resolve(inv.stage.app.source) / "app/assets/stylesheets/application.scss"
    before = serving_state(sandbox, web_hosts)
    r = deploy_edited(stage, css, "\n.broken { color: $undefined-variable; \n")
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "Traceback" not in out
    assert re.search(r"✗ fab deploy failed on web\d, step assets", out)
    assert "state: current unchanged" in out
    assert "fix:" in out
    assert serving_state(sandbox, web_hosts) == before
    for address in web_hosts.values():
        status, _, body = get(address, "/")
        assert status == 200 and "release two" in body
    # The broken release is kept aside for inspection, not left among the releases.
    assert ssh(sandbox, "web1", "sudo ls /srv/sample/releases-failed | wc -l") != "0"


def test_failing_apt_keeps_the_old_release_serving(deployed, sandbox, stage, stages, inv,
                                                   web_hosts):
    """apt runs beside the release upload: when it fails, nothing is switched anywhere."""
    def bad_package(st):
        st["app"]["packages"] = [*st["app"].get("packages", []), "railsfab-no-such-package"]
        st["aws"].pop("stack_name", None)

    bad = stages.variant("hosts-bad-package.yaml", bad_package)
    view = inv.resolve(inv.stage.app.source) / "app/views/photos/index.html.erb"
    before = serving_state(sandbox, web_hosts)
    r = deploy_edited(bad, view, "\n<p>release three</p>\n")
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "Traceback" not in out
    assert re.search(r"✗ fab deploy failed on web\d, step packages", out), out
    assert "railsfab-no-such-package" in out and "fix:" in out
    # The release was uploaded while apt ran, then set aside: current is unchanged.
    assert re.search(r"web1\s+changed\s+release\s", out), out
    assert serving_state(sandbox, web_hosts) == before
    for address in web_hosts.values():
        status, _, body = get(address, "/")
        assert status == 200 and "release two" in body and "release three" not in body


def test_failed_deploy_released_its_lock(deployed, sandbox):
    assert ssh(sandbox, "web1", "sudo test -e /var/lib/railsfab/locks/sample || echo free") \
        == "free"


def test_concurrent_deploy_is_refused_by_the_lock(deployed, sandbox, stage):
    holder = '{"owner": "alice@laptop", "command": "fab deploy", "pid": 4242, ' \
             '"since": "2026-11-28 10:00:00 UTC"}'
    ssh(sandbox, "web2", "sudo mkdir -p /var/lib/railsfab/locks/sample && echo '" + holder +
        "' | sudo tee /var/lib/railsfab/locks/sample/holder.json >/dev/null")
    r = run_fab(stage, "deploy")
    assert r.returncode != 0
    assert "another deploy holds the lock on web2: alice@laptop (fab deploy, pid 4242)" \
        in r.stdout
    assert "fab lock.release --only web2" in r.stdout
    # web1's lock, taken in the same round trip, was given back.
    assert ssh(sandbox, "web1", "sudo test -e /var/lib/railsfab/locks/sample || echo free") \
        == "free"
    released = run_fab(stage, "lock.release", "--only", "web2")
    assert released.returncode == 0 and "alice@laptop" in released.stdout
    again = run_fab(stage, "deploy")
    assert again.returncode == 0, again.stdout + again.stderr
