"""The diagnosis as a table: probe data with one fault in -> the first broken layer out."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from railsfab.diagnose import LAYERS, evaluate, first_broken, layers
from railsfab.diagnose.base import Context
from railsfab.paths import Paths

HEALTHY = json.loads((Path(__file__).parent / "data/probe_healthy.json").read_text())
PATHS = Paths("sample", "/srv/sample")
SOCK = PATHS.socket
SOCKDIR = SOCK.rsplit("/", 1)[0]


def diagnose(mutate) -> object:
    d = copy.deepcopy(HEALTHY)
    mutate(d)
    return first_broken(evaluate(d, workers=2, app_user="deploy", paths=PATHS))


def unicorn_stopped(d):
    d["server"].update(active="inactive", main_pid="0", pid_file=None, pid_proc=None,
                       main_proc=None)
    d["server"]["unit"].update(ActiveState="inactive", SubState="dead", MainPID="0")
    # The socket file outlives the master, and an old permission error lingers in the log:
    # neither may pull the diagnosis to the socket layer.
    d["socket"].update(exists=True, is_socket=True, listening=False, nginx_can_connect=True,
                       holders=[], connect={"result": "refused", "error": "refused"})
    d["http"]["root"] = d["http"]["up"] = {"code": "502", "body": "Bad Gateway"}
    d["logs"]["nginx"] = [f"connect() to unix:{SOCK} failed (13: Permission denied)",
                          f"connect() to unix:{SOCK} failed (111: Connection refused)"]


def nginx_stopped(d):
    d["nginx"].update(active="inactive", listen80=False)
    d["nginx"]["unit"].update(ActiveState="inactive", SubState="dead")
    d["listeners"]["tcp"].pop("80")
    d["http"]["root"] = d["http"]["up"] = {"code": "000", "body": ""}


def default_site(d):
    d["default_sites"] = ["/etc/nginx/sites-enabled/default"]
    d["http"]["root"] = {"code": "200", "body": "<h1>Welcome to nginx!</h1>"}


def no_assets(d):
    d["asset"] = None
    d["http"]["asset"] = None


def wrong_env(d):
    d["server"]["main_proc"]["rails_env"] = "development"


def socket_mismatch(d):
    d["upstream"] = "/srv/sample/shared/tmp/sockets/other.sock"
    d["http"]["root"] = {"code": "502", "body": ""}


def socket_denied(d):
    d["socket"].update(nginx_can_connect=False, connect={
        "result": "denied", "error": "[Errno 13] Permission denied", "as": "www-data"})
    d["socket"]["access"] = {"ok": False, "path": SOCKDIR, "lacks": "x", "user": "www-data",
                             "groups": ["www-data"], "owner": "deploy", "group": "www-data",
                             "mode": "2700", "dir": True}
    d["http"]["root"] = {"code": "502", "body": ""}
    d["requests"]["nginx"] = [f"connect() to unix:{SOCK} failed (13: Permission denied)"]


def stale_pid(d):
    unicorn_stopped(d)
    d["server"]["pid_file"] = "999999"


def db_down(d):
    d["db"] = {"reachable": False, "error": "[Errno 111] Connection refused"}
    d["http"]["root"] = {"code": "500", "body": "We're sorry"}
    d["logs"]["app"] = ["Mysql2::Error::ConnectionError (Can't connect to server on '10.0.0.5')"]


def blocked_host(d):
    d["http"]["root"] = d["http"]["alb_host"] = {"code": "403", "body": "Blocked host: x"}
    d["logs"]["app"] = ["[ActionDispatch::HostAuthorization::DefaultResponseApp] Blocked host: x"]


def half_done(d, *, booted: bool = True):
    """A USR2 handover stopped before the old master was told to QUIT: both serve."""
    srv = d["server"]
    old = copy.deepcopy(srv["main_proc"])
    old.update(cmd=old["cmd"].replace("unicorn master", "unicorn master (old)"),
               cwd="/srv/sample/releases/20261201-0100")
    new = copy.deepcopy(old)
    new.update(pid=4700, ppid=old["pid"], cwd="/srv/sample/releases/20261201-0200",
               cmd=old["cmd"].replace(" (old)", "") if booted else
               "/usr/bin/ruby3.1 /usr/bin/unicorn -D -c /srv/sample/shared/config/unicorn.rb",
               workers=2 if booted else 0)
    srv.update(main_proc=old, oldbin_file=str(old["pid"]), oldbin_proc=old,
               pid_file="4700", pid_proc=new)


@pytest.mark.parametrize("booted, evidence", [
    (True, "master 4610 (/srv/sample/shared/tmp/pids/unicorn.pid.oldbin; release "
           "20261201-0100, 2 of 2 workers) and master 4700 (pid file; release 20261201-0200, "
           "2 of 2 workers) both run"),
    (False, "release 20261201-0100, 2 of 2 workers) runs; the master it forked, 4700 (pid "
            "file), is still booting"),
])
def test_a_half_done_handover_is_finished_by_the_next_restart_not_a_hard_one(booted, evidence):
    broken = diagnose(lambda d: half_done(d, booted=booted))
    assert broken is not None and broken.layer == "app server"
    assert "interrupted zero-downtime handover" in broken.detail
    assert evidence in broken.detail, broken.detail
    assert broken.fix.startswith("fab restart-app (or fab deploy) finishes it")
    assert "--hard" not in broken.fix


def test_a_stale_oldbin_file_is_no_half_done_handover():
    def stale(d):
        d["server"].update(oldbin_file="4610", oldbin_proc=None)
    assert diagnose(stale) is None


@pytest.mark.parametrize("mutate, layer, evidence", [
    (unicorn_stopped, "app server", "502"),
    (nginx_stopped, "nginx", "connection refused"),
    (default_site, "site config", "default site"),
    (no_assets, "assets", "no precompiled assets"),
    (wrong_env, "app server", "RAILS_ENV=development"),
    (socket_mismatch, "socket", "other.sock"),
    (socket_denied, "socket", "Permission denied"),
    (stale_pid, "app server", "stale pid file"),
    (db_down, "database", "Connection refused"),
    (blocked_host, "Rails app", "Blocked host"),
])
def test_fault_names_its_layer(mutate, layer, evidence):
    broken = diagnose(mutate)
    assert broken is not None
    assert (broken.layer, evidence in broken.detail) == (layer, True), broken
    assert broken.fix and broken.role == "cause"


def test_a_socket_nginx_may_not_enter_is_fixed_on_the_directory_that_says_no():
    broken = diagnose(socket_denied)
    assert f"{SOCKDIR} is deploy:www-data 2700: www-data may not enter it" in broken.detail
    assert broken.fix.startswith(f"sudo chmod g+x {SOCKDIR}")


def test_healthy_probe_has_no_broken_layer():
    assert diagnose(lambda d: None) is None


def test_layers_come_in_the_order_a_request_crosses_them():
    verdicts = evaluate(copy.deepcopy(HEALTHY), workers=2, app_user="deploy", paths=PATHS)
    assert [v.layer for v in verdicts] == list(LAYERS)


def test_s3_and_load_balancer_layers_when_configured():
    d = copy.deepcopy(HEALTHY)
    kw = dict(workers=2, app_user="deploy", paths=PATHS)
    ok = evaluate(d, s3={"bucket": "b"}, lb={"id": "i-1", "state": "healthy"}, **kw)
    assert first_broken(ok) is None
    s3_down = first_broken(evaluate(d, s3={"bucket": "b", "error": "AccessDenied"},
                                    lb={"id": "i-1", "state": "healthy"}, **kw))
    assert (s3_down.layer, "AccessDenied" in s3_down.detail) == ("S3", True)
    lb_bad = first_broken(evaluate(d, s3={"bucket": "b"},
                                   lb={"id": "i-1", "state": "unhealthy"}, **kw))
    assert (lb_bad.layer, "unhealthy" in lb_bad.detail) == ("load balancer", True)


# --- puma alone on a TCP port (no nginx) --------------------------------------------------

PUMA_PATHS = Paths("sample", "/srv/sample", "puma")


def alone(mutate=lambda d: None, listening=True):
    d = copy.deepcopy(HEALTHY)
    d["front"] = {"nginx": False, "port": 3000, "listening": listening}
    # nothing of nginx is there, and no socket
    d["nginx"].update(installed=False, active="inactive", listen80=False)
    d["socket"].update(exists=False, is_socket=False, listening=False, nginx_can_connect=None,
                       holders=[])
    mutate(d)
    return evaluate(d, workers=2, app_user="deploy", paths=PUMA_PATHS)


def test_puma_alone_skips_the_nginx_layers_and_is_healthy():
    verdicts = alone()
    assert [v.layer for v in verdicts] == list(LAYERS)
    assert {v.layer: v.status for v in verdicts}["nginx"] == "skip"
    assert "answers on :3000" in verdicts[LAYERS.index("nginx")].detail
    assert first_broken(verdicts) is None


def test_puma_alone_not_listening_on_its_port_is_the_app_servers_fault():
    broken = first_broken(alone(listening=False))
    assert (broken.layer, "tcp :3000" in broken.detail) == ("app server", True)
    assert "restart-app" in broken.fix


def test_puma_alone_stopped_names_the_puma_unit():
    def stopped(d):
        d["server"].update(active="inactive", main_pid="0", pid_file=None, pid_proc=None,
                           main_proc=None)
        d["server"]["unit"].update(ActiveState="inactive", SubState="dead")
        d["http"]["root"] = d["http"]["up"] = {"code": "000", "body": ""}

    broken = first_broken(alone(stopped, listening=False))
    assert (broken.layer, "sample-puma.service is inactive" in broken.detail) == \
        ("app server", True)


# --- the layer objects --------------------------------------------------------------------

SG_OK = {"instance": "i-1", "alb_sg": "sg-alb", "app_sg": "sg-app", "admin_cidr": "10.0.0.0/8",
         "groups": [{"GroupId": "sg-app", "GroupName": "app", "IpPermissions": [
             {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80,
              "UserIdGroupPairs": [{"GroupId": "sg-alb"}]},
             {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
              "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}]}]}
FULL = dict(workers=2, app_user="deploy", s3={"bucket": "b"},
            lb={"id": "i-1", "state": "healthy"}, sg=SG_OK)
BARE_SKIPS = {  # what a stage without nginx, database, bucket or target group skips, and why
    "nginx": "no nginx in this stage: puma answers on :3000 itself",
    "site config": "no nginx in this stage: puma answers on :3000 itself",
    "socket": "no nginx in this stage: puma answers on :3000 itself",
    "database": "no DATABASE_URL or DATABASE_HOST in the env file",
    "S3": "no bucket configured",
    "load balancer": "no target group in this stage (aws.stack_name, aws.target_group_arn)",
    "security groups": "no stack in this stage: no security groups to check",
}


def test_layer_objects_come_in_LAYERS_order():
    assert [layer.name for layer in layers.ALL] == list(LAYERS)
    assert len({type(layer) for layer in layers.ALL}) == len(LAYERS)


def test_every_layer_applies_to_a_full_stage_and_is_ok_when_healthy():
    d = copy.deepcopy(HEALTHY)
    ctx = Context.of(d, paths=PATHS, **FULL)
    for layer in layers.ALL:
        assert layer.applies(ctx), layer.name
        assert layer.verdict(d, ctx).status == "ok", layer.name
    assert [v.status for v in evaluate(d, paths=PATHS, **FULL)] == ["ok"] * len(LAYERS)


def test_each_layer_skips_when_the_stage_lacks_it_with_its_reason():
    d = copy.deepcopy(HEALTHY)
    d["front"] = {"nginx": False, "port": 3000, "listening": True}
    d["db"] = None
    ctx = Context.of(d, workers=2, app_user="deploy", paths=PUMA_PATHS)
    for layer in layers.ALL:
        assert layer.applies(ctx) == (layer.name not in BARE_SKIPS), layer.name
    verdicts = evaluate(d, workers=2, app_user="deploy", paths=PUMA_PATHS)
    assert {v.layer: v.detail for v in verdicts if v.status == "skip"} == BARE_SKIPS
    assert all(v.status == "ok" for v in verdicts if v.layer not in BARE_SKIPS)


def test_a_layers_first_failing_check_names_the_fault():
    d = copy.deepcopy(HEALTHY)
    nginx_stopped(d)
    d["nginx"]["installed"] = False  # both nginx checks fail: the first one in order wins
    broken = first_broken(evaluate(d, workers=2, app_user="deploy", paths=PATHS))
    assert (broken.layer, broken.detail) == ("nginx", "nginx is not installed")


def test_a_404_on_the_health_path_names_the_missing_route_and_its_fixes():
    def no_route(d):
        d["http"]["up"] = {"code": "404", "location": "", "body": "Not Found"}

    d = copy.deepcopy(HEALTHY)
    no_route(d)
    b = first_broken(evaluate(d, workers=2, app_user="deploy", paths=PATHS,
                              health="/healthz"))
    assert b.layer == "Rails app" and b.detail == "/healthz answers 404: the app has no such route"
    assert 'get "up" => "rails/health#show"' in b.fix and "app.health_path" in b.fix


def test_a_redirect_to_https_is_named_force_ssl_with_the_settings_that_fix_it():
    d = copy.deepcopy(HEALTHY)
    d["http"]["up"] = {"code": "301", "location": "https://10.0.0.5/up", "body": ""}
    b = first_broken(evaluate(d, workers=2, app_user="deploy", paths=PATHS))
    assert b.layer == "Rails app" and "config.force_ssl" in b.detail
    assert "app.force_ssl: true" in b.fix and "config.assume_ssl = true" in b.fix
    # told that clients come through TLS, a redirect anyway is the app's own doing
    told = first_broken(evaluate(d, workers=2, app_user="deploy", paths=PATHS, https=True))
    assert "X-Forwarded-Proto: https" in told.fix and "app.force_ssl" not in told.fix


LOGIN_OK = {"ok": True, "server": "10.11.6-MariaDB", "ms": 4}


def with_db(login: dict):
    def mutate(d):
        d["db"] = {"reachable": login.get("ok") or login.get("stage") != "connect",
                   "error": login.get("error"), "login": login,
                   "where": "shop@10.0.0.5:3306/shop_production"}
    return mutate


def test_the_database_layer_logs_in_with_the_apps_credentials():
    verdicts = evaluate(_mutated(with_db(LOGIN_OK)), workers=2, app_user="deploy",
                        paths=PATHS)
    db = next(v for v in verdicts if v.layer == "database")
    assert db.status == "ok"
    assert db.detail == "logged in as shop@10.0.0.5:3306/shop_production (10.11.6-MariaDB, 4 ms)"


def test_refused_credentials_and_a_missing_database_are_told_apart():
    refused = diagnose(with_db({"ok": False, "stage": "auth", "code": "1045",
                                "error": "Access denied for user 'shop'@'10.0.0.11'"}))
    assert refused.layer == "database" and "refuses the app's credentials" in refused.detail
    assert "Access denied" in refused.detail and "DATABASE_PASSWORD" in refused.fix
    missing = diagnose(with_db({"ok": False, "stage": "database", "code": "3D000",
                                "error": 'FATAL: database "shop_production" does not exist'}))
    assert missing.layer == "database" and "does not exist" in missing.detail
    assert "db:create" in missing.fix
    down = diagnose(with_db({"ok": False, "stage": "connect", "error": "Connection refused"}))
    assert down.layer == "database" and down.detail.startswith("cannot reach the database")


def test_a_login_not_tried_is_said_not_blamed_on_the_credentials():
    """The server asked for the password in a way whoever answers would get it: the login
    was not tried, the layer is not failed for it, and its detail says why."""
    said = ("the server asks for md5 password authentication over a connection whose server "
            "is not verified: the password is not sent")
    verdicts = evaluate(_mutated(with_db({"ok": False, "stage": "insecure", "code": "",
                                          "error": said})),
                        workers=2, app_user="deploy", paths=PATHS)
    db = next(v for v in verdicts if v.layer == "database")
    assert db.status == "ok"
    assert db.detail == f"reachable on its port; the login was not tried: {said}"


def _mutated(mutate) -> dict:
    d = copy.deepcopy(HEALTHY)
    mutate(d)
    return d


def test_an_app_without_an_asset_pipeline_skips_the_assets_layer():
    d = copy.deepcopy(HEALTHY)
    d.update(pipeline=False, asset=None)
    d["http"]["asset"] = None
    verdicts = evaluate(d, workers=2, app_user="deploy", paths=PATHS)
    assets = next(v for v in verdicts if v.layer == "assets")
    assert (assets.status, assets.detail) == ("skip", "the app has no asset pipeline "
                                                      "(nothing is precompiled)")
    assert first_broken(verdicts) is None
