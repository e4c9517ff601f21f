"""Issue 23's verdict kinds, one row each: the probe's evidence in, the layer, the evidence
line and the exact fix out (tests/integration/test_check.py injects the same faults on real
hosts; test_fix_property checks that no fix names a path, user or host its evidence does
not)."""

from __future__ import annotations

import pytest

from railsfab.diagnose import first_broken
from tests.unit.test_diagnose_evidence import PATHS, RID, app_server_failing, verdicts

DB = "itest@10.238.1.20:3306/itest_production"
STAGE_DB = "10.238.1.20:3306"


def deploy_to_closed(d):
    d["socket"].update(nginx_can_connect=False, connect={
        "result": "denied", "error": "[Errno 13] Permission denied", "as": "www-data"},
        access={"ok": False, "path": "/srv/sample", "lacks": "x", "user": "www-data",
                "groups": ["www-data"], "owner": "deploy", "group": "deploy", "mode": "0700"})
    d["http"]["root"] = d["http"]["up"] = {"code": "502", "body": "", "location": ""}


def gem_gone(d, provides="4.11.0"):
    app_server_failing(d, {"line": "Could not find mini_magick-4.11.0 in locally installed "
                                   "gems (Bundler::GemNotFound)", "source": PATHS.server_log,
                           "paths": [], "gem": {"gem": "mini_magick", "version": "4.11.0",
                                                "package": "ruby-mini-magick",
                                                "provides": provides}})


def gem_upgraded(d):
    gem_gone(d, provides="4.12.0")


def gem_of_no_package(d):
    gem_gone(d)
    d["server"]["error"]["gem"].update(package=None, provides=None)


def asset_missing(d, sources=("app/assets/stylesheets/application.css",)):
    d["http"]["root"] = {"code": "500", "body": "We're sorry", "location": ""}
    d["requests"]["rails"] = [
        f"[{RID}-root] ActionView::Template::Error (The asset \"application.css\" is not "
        "present in the asset pipeline.", f"[{RID}-root] app/views/layouts/application.html.erb:9"]
    d["missing"] = {"asset": {"asset": "application.css", "sources": list(sources),
                              "manifest": "public/assets/.sprockets-manifest-ab12.json"},
                    "table": None}


def asset_the_app_lacks(d):
    asset_missing(d, sources=())


def db_name_unresolved(d, host="db.invalid"):
    error = f"{host}:3306: [Errno -2] Name or service not known"
    app_server_failing(d, {"line": f"Unknown MySQL server host '{host}' (-2) "
                                   "(Mysql2::Error::ConnectionError)",
                           "source": PATHS.server_log, "paths": []})
    d["db"] = {"reachable": False, "where": f"itest@{host}:3306/itest_production",
               "error": error, "source": "DATABASE_URL (over config/database.yml)",
               "login": {"ok": False, "stage": "connect", "error": error}}


def db_stage_name_unresolved(d):
    db_name_unresolved(d, host="10.238.1.20")


def db_stopped(d):
    error = "10.238.1.20:3306: [Errno 111] Connection refused"
    d["db"] = {"reachable": False, "where": DB, "error": error, "source": "DATABASE_URL",
               "login": {"ok": False, "stage": "connect", "error": error}}


def drop_in_fails(d):
    app_server_failing(d, {"line": "sample-unicorn.service: Control process exited, "
                                   "code=exited, status=3/NOTIMPLEMENTED",
                           "source": "systemd (journalctl -u sample-unicorn.service)",
                           "paths": [], "gem": None})
    d["server"]["unit"]["DropInPaths"] = ("/etc/systemd/system/sample-unicorn.service.d/"
                                          "pre.conf")


def shared_dir_gone(d):
    x = next(x for x in d["release"]["linked"] if x["name"] == "storage")
    x["node"] = None
    app_server_failing(d)


def table_gone(d, file="20261128130013_create_photos.rb"):
    d["http"]["root"] = {"code": "500", "body": "We're sorry", "location": ""}
    error = "Table 'itest_production.photos' doesn't exist"
    d["requests"]["rails"] = [f"[{RID}-root] ActionView::Template::Error (Mysql2::Error: "
                              f"{error}):"]
    d["missing"] = {"asset": None, "table": {"table": "photos", "error": error, "file": file}}


def table_no_migration_makes(d):
    table_gone(d, file=None)


ROWS = [
    (deploy_to_closed, "socket", "/srv/sample is deploy:deploy 0700: www-data may not enter it",
     "sudo chmod 0711 /srv/sample (as fab deploy sets it)"),
    (gem_gone, "app server", "dpkg: ruby-mini-magick provides mini_magick 4.11.0, installed",
     "sudo apt-get install --reinstall ruby-mini-magick (Debian's package of mini_magick "
     "4.11.0), then sudo systemctl restart sample-unicorn.service"),
    (gem_upgraded, "app server", "ruby-mini-magick provides mini_magick 4.12.0",
     "fab deploy (the release's Gemfile.lock asks mini_magick 4.11.0; ruby-mini-magick now "
     "provides 4.12.0"),
    (gem_of_no_package, "app server", "Could not find mini_magick-4.11.0",
     "fab deploy (its gems step installs mini_magick 4.11.0 for the release)"),
    (asset_missing, "assets", ".sprockets-manifest-ab12.json in current/public/assets lacks it, "
     "though the release has app/assets/stylesheets/application.css",
     "fab rails --only web2 -- assets:precompile (compiles the release's assets again, "
     "RAILS_ENV=production), then fab restart-app --only web2"),
    (asset_the_app_lacks, "assets", "no file of the release's app/assets",
     "the app asks for application.css, which it does not have"),
    (db_name_unresolved, "database", "db.invalid:3306: [Errno -2] Name or service not known",
     "fab deploy writes DATABASE_URL with hosts.yaml's database (10.238.1.20:3306) into "
     "/etc/railsfab/sample.env again (it names db.invalid)"),
    (db_stage_name_unresolved, "database", "Name or service not known",
     "10.238.1.20 does not resolve from this host: set database.host in hosts.yaml"),
    (db_stopped, "database", "Connection refused",
     "nothing listens on 10.238.1.20:3306: start the database server there"),
    (drop_in_fails, "app server", "/etc/systemd/system/sample-unicorn.service.d/pre.conf adds "
     "to the unit", "remove (or fix) /etc/systemd/system/sample-unicorn.service.d/pre.conf, "
     "not railsfab's, then sudo systemctl daemon-reload"),
    (shared_dir_gone, "release", "/srv/sample/shared/storage does not exist",
     "sudo install -d -o deploy -g deploy -m 2770 /srv/sample/shared/storage (as fab deploy "
     "makes it), then sudo systemctl restart sample-unicorn.service"),
    (table_gone, "database", "db/migrate/20261128130013_create_photos.rb creates photos and is "
     "recorded as run", "fab rails --only web2 -- db:migrate:status (lists what the database "
     "recorded); restore photos from a backup, or delete version 20261128130013 from "
     "schema_migrations and fab rails --only web2 -- db:migrate:up VERSION=20261128130013"),
    (table_no_migration_makes, "database", "no migration of the release creates it",
     "the app's code asks for table photos, which none of its migrations"),
]


@pytest.mark.parametrize("mutate, layer, evidence, fix", ROWS, ids=lambda x: getattr(
    x, "__name__", None))
def test_each_kind_gives_the_fix_its_evidence_calls_for(mutate, layer, evidence, fix):
    cause = first_broken(verdicts(mutate, stage_db=STAGE_DB))
    assert (cause.layer, cause.role) == (layer, "cause"), cause
    assert evidence in cause.detail, cause.detail
    assert fix in cause.fix, cause.fix
    assert "check the DB host is up" not in cause.fix  # never generic where evidence is not
    assert "chown www-data" not in cause.fix
