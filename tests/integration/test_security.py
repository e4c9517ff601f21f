"""What the app's own code (run as the deploy user during a deploy) may not turn into root:
a release that plants links for root to follow; and the units' sandboxing, on unicorn."""

from __future__ import annotations

import re

import pytest

from tests.conftest import run_fab
from tests.integration.test_deploy import current_release, get, ssh


@pytest.fixture(scope="module")
def stage(stages):
    return stages.unicorn()


def test_a_release_that_links_public_to_etc_shadow_fails_and_changes_nothing(stage, inv,
                                                                           sandbox):
    app = inv.resolve(inv.stage.app.source)
    rake = app / "lib/tasks/plant.rake"
    rake.write_text('Rake::Task["assets:precompile"].enhance do\n'
                    '  public = Rails.root.join("public")\n'
                    '  FileUtils.mv(public, Rails.root.join("public.real"))\n'
                    '  File.symlink("/etc/shadow", public)\n'
                    "end\n")
    css = app / "app/assets/stylesheets/application.scss"
    good_css = css.read_text()
    css.write_text(good_css + "\n/* precompile again */\n")  # so that precompile runs
    shadow = {h: ssh(sandbox, h, "sudo stat -c '%a %U %G' /etc/shadow") for h in ("web1", "web2")}
    before = {h: current_release(sandbox, h) for h in ("web1", "web2")}
    try:
        r = run_fab(stage, "deploy")
    finally:
        rake.unlink()
        css.write_text(good_css)
    assert r.returncode != 0
    assert "step assets" in r.stdout and "public is a link to /etc/shadow" in r.stdout
    assert {h: ssh(sandbox, h, "sudo stat -c '%a %U %G' /etc/shadow")
            for h in ("web1", "web2")} == shadow
    assert {h: current_release(sandbox, h) for h in ("web1", "web2")} == before
    assert all(get(h.address, "/")[0] == 200 for h in inv.hosts(role="web"))
    again = run_fab(stage, "deploy")
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_link_planted_in_shared_is_refused_not_followed(stage, sandbox):
    shared = "/srv/sample/shared"
    ssh(sandbox, "web2", f"sudo runuser -u deploy -- sh -c 'mv {shared}/storage "
                         f"{shared}/storage.real && ln -s /etc {shared}/storage'")
    try:
        r = run_fab(stage, "deploy")
    finally:
        ssh(sandbox, "web2", f"sudo runuser -u deploy -- sh -c 'rm {shared}/storage && "
                             f"mv {shared}/storage.real {shared}/storage'")
    assert r.returncode != 0
    assert "step directories" in r.stdout
    assert "/srv/sample/shared/storage: " in r.stdout
    assert ssh(sandbox, "web2", "stat -c '%U %a' /etc") == "root 755"
    assert run_fab(stage, "deploy").returncode == 0


def exposure(sandbox, host: str, unit: str) -> float:
    out = ssh(sandbox, host, f"sudo systemd-analyze security {unit} 2>&1 | tail -n 1")
    return float(re.search(r"Overall exposure level for \S+: ([\d.]+)", out).group(1))


def test_the_unicorn_unit_is_sandboxed_and_the_app_still_serves(stage, sandbox, inv):
    for h in inv.hosts(role="web"):
        assert exposure(sandbox, h.name, "sample-unicorn") <= 2.0
        shown = ssh(sandbox, h.name, "systemctl show -p NoNewPrivileges -p ProtectSystem "
                                     "sample-unicorn")
        assert dict(ln.split("=", 1) for ln in shown.splitlines()) == {
            "NoNewPrivileges": "yes", "ProtectSystem": "strict"}
        assert get(h.address, "/")[0] == 200
