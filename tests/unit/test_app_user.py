"""The app runs as its own user (app.app_user): what the inventory accepts, what the plan
does on a host where the app still runs as the deploy user, and how dirs.py hands that
user's files over without following a link."""

from __future__ import annotations

import os
import pwd
import subprocess

import pytest

from railsfab import onhost
from railsfab.inventory import App
from railsfab.ops import host
from tests.unit import test_plans
from tests.unit.test_plans import deployed, outcome

d = test_plans.d  # the built stage (a module fixture)
BASE = {"name": "shop", "source": ".", "deploy_to": "/srv/shop"}


def test_the_app_user_defaults_to_the_apps_name_and_writes_only_shared():
    app = App(**BASE)
    assert app.run_user == "shop"
    assert app.app_writable == ["/srv/shop/shared/log", "/srv/shop/shared/tmp",
                                "/srv/shop/shared/storage"]
    extra = App(**BASE, app_user="shopapp", writable=["/srv/shop/shared/uploads", "/data/shop"])
    assert extra.run_user == "shopapp" and extra.app_writable[-2:] == ["/srv/shop/shared/uploads",
                                                                       "/data/shop"]


@pytest.mark.parametrize("settings, says", [
    ({"app_user": "deploy"}, "may not be deploy"),
    ({"app_user": "root"}, "may not be root"),
    ({"app_user": "Shop"}, "should match pattern"),
    ({"writable": ["/srv/shop/releases/x"]}, "not in shared/"),
    ({"writable": ["/srv/shop"]}, "not in shared/"),
    ({"writable": ["/srv/shop/shared/config"]}, "shared/config"),
    ({"writable": ["/etc/cron.d"]}, "system directory"),
    ({"writable": ["/srv/shop/shared/../../etc"]}, "plainly"),
])
def test_an_app_user_or_writable_folder_that_would_widen_what_the_app_writes_is_refused(
        settings, says):
    with pytest.raises(ValueError, match=says):
        App(**{**BASE, **settings})


def test_a_host_without_the_app_user_creates_it_in_the_deploy_users_group(d):
    f = deployed(d)
    f.raw["app_user"] = None
    got = outcome(f, d, "app user")
    script = got.scripts[0].text
    assert "useradd --system" in script and "--shell /usr/sbin/nologin" in script
    assert script.endswith("--groups deploy shop") and "--create-home" not in script
    f.raw["app_user"] = ["shop"]
    assert outcome(f, d, "app user").scripts[0].text == "usermod -a -G deploy shop"


def test_shared_folders_the_deploy_user_owned_are_handed_to_the_app_user(d):
    f = deployed(d)
    for path, owner, *_ in host.dirs(d):  # as a host deployed before app_user
        if owner == "shop":
            f.raw["nodes"][path] = {**f.raw["nodes"][path], "owner": "deploy", "mode": "0750"}
    got = outcome(f, d, "directories")
    assert "shared/log" in got.what and "shared/tmp/sockets" in got.what
    owners = {path: (owner, group, mode) for path, owner, group, mode in host.dirs(d)}
    assert owners["/srv/shop/shared/log"] == ("shop", "deploy", "2770")
    assert owners["/srv/shop/releases"] == ("deploy", "deploy", "0711")
    assert owners["/srv/shop/shared/config"] == ("root", "deploy", "0750")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_adoption_reowns_the_deploy_users_files_and_never_follows_a_link(tmp_path):
    before, after = pwd.getpwnam("nobody"), pwd.getpwnam("root")
    victim = tmp_path / "victim"
    victim.write_text("root's")
    os.chown(victim, after.pw_uid, 0)
    victim.chmod(0o600)
    top = tmp_path / "srv" / "log"
    (top / "sub").mkdir(parents=True)
    (top / "production.log").write_text("x")
    (top / "sub" / "blob").write_text("y")
    (top / "evil").symlink_to(victim)
    (top / "sub" / "evil-dir").symlink_to(tmp_path)
    for p in (top, top / "sub", top / "production.log", top / "sub" / "blob"):
        os.chown(p, before.pw_uid, before.pw_gid)
        p.chmod(0o750 if p.is_dir() else 0o640)
    os.lchown(top / "evil", before.pw_uid, before.pw_gid)
    code = onhost.python_call("dirs.py", "main", {"dirs": [[str(top), "root", "nogroup", "2770",
                                                             "nobody"]]})
    out = subprocess.run(["python3", "-"], input=code, capture_output=True, check=True).stdout
    assert out.strip() == b"[]"
    assert os.stat(top / "sub").st_uid == 0 and os.stat(top / "sub").st_mode & 0o2070 == 0o2070
    assert os.stat(top / "production.log").st_mode & 0o777 == 0o660
    assert os.lstat(top / "evil").st_uid == 0  # the link itself, not what it names
    assert os.stat(victim).st_mode & 0o777 == 0o600 and os.stat(tmp_path).st_uid == os.getuid()


def test_a_link_where_the_apps_file_belongs_is_named_and_its_fix_removes_only_the_link(
        tmp_path):
    from railsfab.diagnose.evidence import denial, grant
    from railsfab.onhost.check_sys import may

    log = tmp_path / "production.log"
    log.symlink_to("/etc/shadow")
    denied = may(str(log), "root", "w", link_ok=False)
    assert denied["ok"] is False and denied["link"] == "/etc/shadow"
    assert denial(denied).endswith("is a link to /etc/shadow, where the app's own file belongs")
    assert grant(denied).startswith(f"sudo rm {log} (the link only")
    assert "chown" not in grant(denied)
    assert may(str(log), "root", "w")["ok"]  # where links are fine (the default)


def test_a_server_that_cannot_start_in_the_wrong_rails_env_is_named_for_that():
    """The app may not write its release: in development (which writes tmp/ and db/ there)
    it does not start at all. The env file's RAILS_ENV is the cause named, with its fix."""
    from tests.unit.test_diagnose import diagnose, unicorn_stopped

    def dev(d):
        unicorn_stopped(d)
        d["server"]["start_rails_env"] = "development"
    b = diagnose(dev)
    assert b.layer == "app server"
    assert "starts with RAILS_ENV=development (from /etc/railsfab/sample.env)" in b.detail
    assert b.fix.startswith("fab deploy (writes /etc/railsfab/sample.env with "
                            "RAILS_ENV=production")
    assert "RAILS_ENV" not in diagnose(unicorn_stopped).detail
