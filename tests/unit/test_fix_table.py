"""Issue 23's verdict kinds, one row each: the probe's evidence in, the layer, the evidence
line and the exact fix out (tests/integration/test_check.py injects the same faults on real
hosts; test_fix_property checks that no fix names a path, user or host its evidence does
not)."""

from __future__ import annotations

import copy

import pytest

from railsfab.diagnose import first_broken, same_assets
from railsfab.diagnose.layers import ALL
from tests.unit import test_diagnose as td
from tests.unit import test_diagnose_evidence as ev
from tests.unit.test_diagnose import half_done
from tests.unit.test_diagnose_evidence import PATHS, RID, app_server_failing, verdicts
from tests.unit.test_fleet_assets import R1, R2, A, B
from tests.unit.test_fleet_assets import doc as serving
from tests.unit.test_security_groups import cidr, group, instance

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


def master_starting_on_an_unresolved_db(d):
    """A start under way: its master holds the socket, waiting on a database name that
    does not resolve (no error logged yet): not a process left from an earlier start."""
    db_name_unresolved(d)
    d["server"]["error"] = None
    d["server"]["unit"].update(SubState="start", Result="success")
    d["socket"].update(listening=True, holders=[{
        "pid": 7059, "ppid": 1, "cmd": "unicorn master -D", "user": "sample",
        "unit": "sample-unicorn.service", "state": "S"}])


def db_stage_name_unresolved(d):
    db_name_unresolved(d, host="10.238.1.20")


def db_stopped(d):
    error = "10.238.1.20:3306: [Errno 111] Connection refused"
    d["db"] = {"reachable": False, "where": DB, "error": error, "source": "DATABASE_URL",
               "login": {"ok": False, "stage": "connect", "error": error}}


def drop_in_fails(d):
    app_server_failing(d, {"line": "its ExecStartPre=/bin/sh -c echo no; exit 3 exited with "
                                   "status 3",
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
     "ruby-mini-magick provides mini_magick 4.12.0, the release's Gemfile.lock asks "
     "mini_magick 4.11.0: make them agree"),
    (gem_of_no_package, "app server", "Could not find mini_magick-4.11.0",
     "install it where the release loads its gems, as their owner: cd /srv/sample/current "
     "&& sudo -u $(stat -c %U /srv/sample/shared/gems) env BUNDLE_GEMFILE="),
    (asset_missing, "assets", ".sprockets-manifest-ab12.json in current/public/assets lacks it, "
     "though the release has app/assets/stylesheets/application.css",
     "fab rails --only web2 -- assets:precompile (compiles the release's assets again, "
     "RAILS_ENV=production), then fab restart-app --only web2"),
    (asset_the_app_lacks, "assets", "no file of the release's app/assets",
     "the app asks for application.css, which it does not have"),
    (db_name_unresolved, "database", "db.invalid:3306: [Errno -2] Name or service not known",
     "fab deploy writes DATABASE_URL with hosts.yaml's database (10.238.1.20:3306) into "
     "/etc/railsfab/sample.env again (it names db.invalid)"),
    (master_starting_on_an_unresolved_db, "database", "db.invalid:3306: [Errno -2] Name or "
     "service not known", "fab deploy writes DATABASE_URL with hosts.yaml's database"),
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


# --- every other kind of verdict, each with what it is judged in besides the probe -------

def nginx_missing(d):
    d["nginx"]["installed"] = False


def site_without_upstream(d):
    d["upstream"] = None


def no_current(d):
    d["release"].update(link=None, target=None, exists=False)


def log_file_closed(d):
    d["release"]["files"][0]["app_user"] = {
        "ok": False, "path": "/srv/sample/shared/log/unicorn.stderr.log", "lacks": "w",
        "user": "deploy", "groups": ["deploy"], "owner": "root", "group": "root",
        "mode": "0644", "dir": False}


def env_file_says_development(d):
    app_server_failing(d, state="failed", sub="failed")
    d["server"]["start_rails_env"] = "development"


def master_of_another_user(d):
    d["server"]["main_proc"]["user"] = "root"


def one_worker_of_two(d):
    d["server"]["main_proc"]["workers"] = 1


def master_not_listening(d):
    d["socket"].update(listening=False, holders=[])


def blank_204(d):
    d["http"]["root"] = {"code": "204", "body": ""}


def asset_404(d):
    d["http"]["asset"] = {"code": "404", "body": "", "location": ""}


def db_query_fails(d):
    d["http"]["root"] = {"code": "500", "body": "We're sorry", "location": ""}
    d["requests"]["rails"] = [f"[{RID}-root] ActionView::Template::Error (Mysql2::Error: "
                              "Lock wait timeout exceeded; try restarting transaction):"]


def db_read_only(d):
    d["db"]["privileges"] = {"missing": ["(the database): INSERT"]}


def healthy(d):
    pass


def unit_edited(d):
    d["server"]["unit"]["NeedDaemonReload"] = "yes"


def site_edited(d):
    d["texts"] = {PATHS.nginx_site: "server {\n  listen 80;\n  client_max_body_size 1m;\n}\n"}


SITE_WANTED = {PATHS.nginx_site: ["server {\n  listen 80;\n}\n"]}
STAGE_S3 = {"bucket": "sample-uploads"}
LB_OK = {"id": "i-0abc", "state": "healthy"}


def app_bucket_denied(d):
    d["s3"] = {"service": "amazon", "bucket": "sample-uploads", "error": "AccessDenied: Access "
               "Denied"}


# what comparing the web hosts says of web2 (railsfab.diagnose.fleet): its manifest is not
# the one web1 and web3 serve, on the same release (precompiled on each host) or another
ODD_BUILD = same_assets({"web1": serving(A), "web2": serving(B), "web3": serving(A)},
                        "prod")["web2"]
ODD_RELEASE = same_assets({"web1": serving(A, R2), "web2": serving(B, R1),
                           "web3": serving(A, R2)}, "prod")["web2"]


EXTRA_ROWS = [
    # (evidence in, layer, detail, fix, what it is judged in besides the probe)
    (nginx_missing, "nginx", "nginx is not installed", "fab deploy", {}),
    (site_without_upstream, "site config", f"{PATHS.nginx_site} missing or has no unix upstream",
     "fab deploy", {}),
    (no_current, "release", "no /srv/sample/current link", "fab deploy", {}),
    (log_file_closed, "release", "/srv/sample/shared/log/unicorn.stderr.log is root:root 0644",
     "sudo chown deploy:deploy /srv/sample/shared/log/unicorn.stderr.log (a file in the app's "
     "own /srv/sample/shared/log)", {}),
    (half_done, "app server", "an interrupted zero-downtime handover",
     "fab restart-app (or fab deploy) finishes it", {}),
    (env_file_says_development, "app server", "it starts with RAILS_ENV=development (from "
     "/etc/railsfab/sample.env), the stage says production", "fab deploy (writes "
     "/etc/railsfab/sample.env with RAILS_ENV=production", {}),
    (master_of_another_user, "app server", "master 4610 runs as root", "fab restart-app --hard",
     {}),
    (one_worker_of_two, "app server", "1 of 2 workers running", "fab restart-app", {}),
    (master_not_listening, "app server", "master 4610 does not listen on "
     "/srv/sample/shared/tmp/sockets/unicorn.sock", "fab restart-app --hard", {}),
    (blank_204, "Rails app", "/ answers 204 with no page", "", {}),
    (asset_404, "assets", "answers 404", "nginx's /assets location must serve "
     "current/public/assets", {}),
    (healthy, "assets", f"web2 serves assets manifest bbbbbbbbbbbb (42 files, release {R1}), "
     f"web1, web3 serve aaaaaaaaaaaa (42 files, release {R1}): release {R1} was precompiled "
     "on each host separately", "deploy a new release with fab deploy --stage prod: it is "
     "built once and every host receives the same files", {"fleet": ODD_BUILD}),
    (healthy, "assets", f"release {R1}), web1, web3 serve aaaaaaaaaaaa (42 files, release "
     f"{R2}): the hosts run different releases", "fab deploy --stage prod (puts every host "
     "on one release)", {"fleet": ODD_RELEASE}),
    (db_query_fails, "database", "/ answers 500: ActionView::Template::Error (Mysql2::Error: "
     "Lock wait timeout exceeded", "", {}),
    (db_read_only, "database", "may not write the app's data", "GRANT SELECT, INSERT, UPDATE, "
     "DELETE ON `itest_production`.* TO 'itest'@'%'", {}),
    (app_bucket_denied, "S3", "AccessDenied", "this host's identity (its instance profile or "
     "the env file's keys) may not use sample-uploads", {"s3": STAGE_S3}),
    (healthy, "S3", "round trip to sample-uploads failed: NoSuchBucket",
     "sample-uploads does not exist: fab aws.provision creates the stage's bucket",
     {"s3": {"bucket": "sample-uploads", "error": "NoSuchBucket: The specified bucket does "
             "not exist"}}),
    (healthy, "load balancer", "target i-0abc is unhealthy: Target.Timeout", "the ALB gets no "
     "answer in time", {"lb": {"id": "i-0abc", "state": "unhealthy", "reason": "Target.Timeout"}}),
    (healthy, "security groups", "could not read the instance's security groups",
     "ec2:DescribeInstances", {"sg": {**instance(), "error": "UnauthorizedOperation"}}),
    (healthy, "security groups", "open to 0.0.0.0/0 through sg-web (extra)",
     "aws ec2 revoke-security-group-ingress --group-id sg-web --protocol tcp --port 80 "
     "--cidr 0.0.0.0/0", {"sg": instance(group("sg-web", cidr(80, "0.0.0.0/0")))}),
    (healthy, "security groups", ":22 (SSH) of i-0abc is open to 0.0.0.0/0",
     "--port 22 --cidr 0.0.0.0/0", {"sg": instance(group("sg-ssh", cidr(22, "0.0.0.0/0")))}),
    (healthy, "security groups", "app security group sg-app is not attached to i-0abc",
     "fab deploy attaches it", {"sg": {**instance(), "groups": []}}),
    (td.default_site, "site config", "the default site shadows the app "
     "(/etc/nginx/sites-enabled/default)", "sudo rm /etc/nginx/sites-enabled/default && sudo "
     "systemctl reload nginx", {}),
    (td.blocked_host, "Rails app", "Blocked host: x", 'config.hosts << ".elb.amazonaws.com" in '
     "config/environments/production.rb", {}),
    (td.no_assets, "assets", "no precompiled assets in current/public/assets",
     "fab rails --only web2 -- assets:precompile", {}),
    (td.socket_mismatch, "socket", "nginx upstream /srv/sample/shared/tmp/sockets/other.sock",
     "fab deploy", {}),
    (td.stale_pid, "app server", "stale pid file: /srv/sample/shared/tmp/pids/unicorn.pid names "
     "999999", "sudo rm /srv/sample/shared/tmp/pids/unicorn.pid && sudo systemctl restart "
     "sample-unicorn.service", {}),
    (td.wrong_env, "app server", "unicorn runs with RAILS_ENV=development, the stage says "
     "production", "fab deploy (the unit and env file pass RAILS_ENV explicitly), then fab "
     "restart-app --hard", {}),
    # warnings: the app works now, and will not stay so
    (unit_edited, "app server", "changed on disk after systemd read it", "fab deploy", {}),
    (site_edited, "site config", "(the host has: 'client_max_body_size 1m;')", "fab deploy",
     {"expected": SITE_WANTED}),
]

TABLE = [(*row, {}) for row in ROWS] + EXTRA_ROWS
# tests/unit/test_diagnose_evidence.py's table (tested there): counted for the coverage below
EVIDENCE_ROWS = next(m.args[1] for m in
                     ev.test_the_cause_its_evidence_and_a_fix_from_the_evidence.pytestmark
                     if m.name == "parametrize")


def judged(mutate, kw):
    vs = verdicts(mutate, stage_db=STAGE_DB, **kw)
    return first_broken(vs) or next((v for v in vs if v.status == "warn"), None)


@pytest.mark.parametrize("mutate, layer, evidence, fix, kw", TABLE,
                         ids=[f"{row[1]}: {row[0].__name__}" for row in TABLE])
def test_each_kind_gives_the_fix_its_evidence_calls_for(mutate, layer, evidence, fix, kw):
    cause = judged(mutate, kw)
    assert cause.layer == layer and cause.role in ("cause", ""), cause
    assert evidence in cause.detail, cause.detail
    assert fix in cause.fix, cause.fix
    assert "check the DB host is up" not in cause.fix  # never generic where evidence is not
    assert "chown www-data" not in cause.fix


def test_every_check_of_every_layer_has_a_row(monkeypatch):
    """The table covers every kind of verdict: each check (and warning) of each layer gives
    the verdict of at least one row."""
    fired = set()

    def watched(check):
        def run(d, ctx):
            found = check(d, ctx)
            if found:
                fired.add(check.__name__)
            return found
        return run

    for layer in ALL:
        monkeypatch.setattr(layer, "checks", tuple(watched(c) for c in layer.checks))
        monkeypatch.setattr(layer, "warnings", tuple(watched(c) for c in layer.warnings))
    for mutate, _, _, _, kw in TABLE + [(*row, {}) for row in EVIDENCE_ROWS]:
        judged(mutate, copy.deepcopy(kw))
    kinds = {c.__name__ for layer in ALL for c in type(layer).checks + type(layer).warnings}
    assert sorted(kinds - fired) == [], f"verdict kinds without a row: {sorted(kinds - fired)}"
