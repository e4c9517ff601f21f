"""Verdicts from generic evidence, as a table: the healthy probe document (read on a sandbox
host) with the evidence one fault leaves -> the cause, its evidence, a fix that names the
path, unit or process the evidence shows; the broken layers that follow as consequences."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from railsfab.diagnose import NOT_DEPLOYED, evaluate, first_broken, not_deployed
from railsfab.ops.host import dirs
from railsfab.paths import Paths

HEALTHY = json.loads((Path(__file__).parent / "data/probe_healthy.json").read_text())
PATHS = Paths("sample", "/srv/sample")
# the folders fab deploy makes, with the owner, group and mode it sets (the app runs as
# the deploy user here)
MODES = {path: (owner, group, mode) for path, owner, group, mode in dirs(SimpleNamespace(
    app=SimpleNamespace(deploy_user="deploy", run_user="deploy", writable=[], gems="debian"),
    paths=PATHS))}
SOCK, LOG, ENV = PATHS.socket, f"{PATHS.shared}/log", PATHS.env_file
RID = HEALTHY["requests"]["id"]


def verdicts(mutate, **kw):
    d = copy.deepcopy(HEALTHY)
    mutate(d)
    kw.setdefault("modes", MODES)
    return evaluate(d, workers=2, app_user="deploy", paths=PATHS, host="web2", **kw)


def stray(pid=4242, cmd="python3 -m http.server 80", unit="stray.service", user="root"):
    return {"pid": pid, "cmd": cmd, "user": user, "unit": unit, "ppid": 1, "state": "S"}


def app_server_failing(d, error=None, state="activating", sub="auto-restart"):
    d["server"].update(active=state, main_pid="0", pid_file=None, pid_proc=None,
                       main_proc=None, error=error)
    d["server"]["unit"].update(ActiveState=state, SubState=sub, Result="exit-code",
                               MainPID="0")
    d["socket"].update(listening=False, holders=[], connect={"result": "missing"})
    d["listeners"]["unix"] = {}
    d["http"]["root"] = d["http"]["up"] = {"code": "502", "body": "", "location": ""}


SECRET = ("/usr/lib/ruby/railties/application.rb:603:in `validate_secret_key_base': Missing "
          "`secret_key_base` for 'production' environment, set this string with `bin/rails "
          "credentials:edit` (ArgumentError)")


def secret_missing(d):
    app_server_failing(d, {"line": SECRET, "source": PATHS.server_log, "paths": []})
    d["server"]["env_keys"] = ["DATABASE_HOST", "RAILS_ENV"]


def config_syntax_error(d):
    conf = PATHS.server_config
    app_server_failing(d, {"line": f"bundle[1]: {conf}:34: syntax error (SyntaxError)",
                           "source": "journalctl", "paths": [
                               {"path": conf, "read": {"ok": True}, "app_user": {
                                   "ok": False, "path": conf, "lacks": "w", "owner": "root",
                                   "group": "deploy", "mode": "0640", "user": "deploy"}}]})


def denied_at_boot(d):
    path = f"{PATHS.shared}/storage/cache"
    app_server_failing(d, {"line": f"Permission denied @ dir_s_mkdir - {path} (Errno::EACCES)",
                           "source": PATHS.server_log, "paths": [
                               {"path": path, "read": {"ok": True}, "app_user": {
                                   "ok": False, "path": f"{PATHS.shared}/storage",
                                   "lacks": "w", "owner": "root", "group": "root",
                                   "mode": "0755", "user": "deploy", "groups": ["deploy"]}}]})


def master_left_behind(d):
    app_server_failing(d, {"line": "Address already in use (Errno::EADDRINUSE)",
                           "source": PATHS.server_log, "paths": []})
    d["socket"]["holders"] = [stray(77, "unicorn master -D", "sample-unicorn.service",
                                    "deploy")]


def workers_stopped(d):
    for w in d["server"]["main_proc"]["worker_procs"]:
        w["state"] = "T"
    d["socket"]["connect"] = {"result": "no answer", "ms": 3003, "as": "www-data"}
    d["http"]["root"] = d["http"]["up"] = {"code": "000", "body": "", "location": ""}


def config_broken_on_disk(d):
    d["nginx"]["conf_test"] = {"ok": False, "output": "test failed", "errors": [{
        "level": "emerg", "message": 'unknown directive "x"',
        "file": "/etc/nginx/sites-enabled/sample", "line": 21, "text": "x on;",
        "real": PATHS.nginx_site, "same": []}]}


def duplicate_default_server(d):
    d["default_sites"] = ["/etc/nginx/sites-enabled/default"]
    d["nginx"]["conf_test"] = {"ok": False, "output": "test failed", "errors": [{
        "level": "emerg", "message": "a duplicate default server for 0.0.0.0:80",
        "file": "/etc/nginx/sites-enabled/sample", "line": 17,
        "text": "listen 80 default_server;", "real": PATHS.nginx_site,
        "same": [{"file": "/etc/nginx/sites-enabled/default", "line": 22}]}]}


def other_process_on_80(d):
    d["nginx"].update(active="inactive")
    d["nginx"]["unit"].update(ActiveState="inactive", SubState="dead")
    d["listeners"]["tcp"]["80"] = [stray()]
    d["http"]["up"] = {"code": "404", "body": "", "location": ""}


def nginx_cannot_bind(d):
    other_process_on_80(d)
    d["nginx"]["unit"].update(ActiveState="failed", SubState="failed", Result="exit-code")
    d["nginx"]["journal"] = ["02:05:08 nginx[8983]: nginx: [emerg] bind() to 0.0.0.0:80 "
                             "failed (98: Address already in use)"]


def socket_taken(d):
    app_server_failing(d)
    d["socket"].update(listening=True, holders=[stray(51, "python3 -c bind", "hold.service")])


def log_fs_full(d):
    d["host"]["disks"].append({
        "path": LOG, "paths": [LOG], "size": 4 << 20, "avail": 0, "files": 1000,
        "favail": 990, "mount": {"point": LOG, "fstype": "tmpfs", "source": "tmpfs"},
        "biggest": [{"path": f"{LOG}/big.log", "size": 4 << 20, "owner": "deploy"}]})


def inodes_out(d):
    d["host"]["disks"][0]["favail"] = 12


OOM = ("02:12:52 kernel[0]: Out of memory: Killed process 11021 (ruby) total-vm:1048576kB, "
       "anon-rss:524288kB")


def oom_killed(d):
    d["server"]["oom"]["lines"] = [OOM]


def oom_under_unit_limit(d):
    d["server"]["oom"].update(lines=[], cgroup_kills=2, result="oom-kill")
    d["server"]["unit"]["MemoryMax"] = "268435456"


def release_removed(d):
    d["release"]["exists"] = False
    d["release"]["releases"] = [{"id": "20260101000000", "state": "good"}]
    app_server_failing(d)


def log_dir_root_owned(d):
    d["release"]["linked"][0]["app_user"] = {
        "ok": False, "path": LOG, "lacks": "wx", "user": "deploy", "groups": ["deploy"],
        "owner": "root", "group": "root", "mode": "0755", "dir": True}
    app_server_failing(d)


def raised_in_a_view(d):
    d["http"]["root"] = {"code": "500", "body": "We're sorry", "location": ""}
    d["requests"]["rails"] = [
        f"I, [2026-12-01T02:01:48 #4613]  INFO -- : [{RID}-root] Started GET \"/\"",
        f"I, [2026-12-01T02:01:48 #4613]  INFO -- : [{RID}-root] Completed 500 Internal "
        "Server Error in 5ms",
        f"[{RID}-root] ActionView::Template::Error (boom):",
        f"[{RID}-root] app/views/photos/index.html.erb:1"]


def db_refuses_and_app_cannot_boot(d):
    app_server_failing(d, {"line": "E, [x] ERROR -- : Access denied for user 'shop' "
                                   "(ActiveRecord::ConnectionNotEstablished)",
                           "source": PATHS.server_log, "paths": []})
    d["db"] = {"reachable": True, "where": "shop@db:3306/shop", "error": "Access denied",
               "login": {"ok": False, "stage": "auth", "error": "Access denied for user"}}


def migration_pending(d):
    d["db"]["migrations"] = {"files": 3, "ran": 2, "pending": ["20990101000000_add_x.rb"],
                             "count": 1}
    raised_in_a_view(d)
    d["requests"]["rails"][2] = (f"[{RID}-root] ActionView::Template::Error (Mysql2::Error: "
                                 "Unknown column 'photos.x' in 'WHERE'):")


@pytest.mark.parametrize("mutate, layer, evidence, fix", [
    (secret_missing, "app server", "Missing `secret_key_base`",
     f"SECRET_KEY_BASE is not set in {ENV}"),
    (config_syntax_error, "app server", "syntax error",
     f"fab deploy writes {PATHS.server_config}"),
    (denied_at_boot, "app server", "Permission denied",
     f"sudo chown deploy:deploy {PATHS.shared}/storage && sudo chmod 2770 {PATHS.shared}/storage"),
    (master_left_behind, "app server", "held by pid 77", "sudo kill 77"),
    (workers_stopped, "app server", "no worker answered", "sudo kill -CONT"),
    (config_broken_on_disk, "nginx", 'unknown directive "x"', PATHS.nginx_site),
    (duplicate_default_server, "nginx", "/etc/nginx/sites-enabled/default:22",
     "remove or fix /etc/nginx/sites-enabled/default"),
    (other_process_on_80, "nginx", "held by pid 4242", "sudo systemctl stop stray.service"),
    (nginx_cannot_bind, "nginx", "Address already in use", "sudo systemctl stop stray.service"),
    (socket_taken, "socket", "held by pid 51", "sudo systemctl stop hold.service"),
    (log_fs_full, "host", f"{LOG} (tmpfs tmpfs, holding {LOG}) is full",
     f"sudo truncate -s 0 {LOG}/big.log"),
    (inodes_out, "host", "12 of 16777216 inodes free", "free inodes on /"),
    (oom_killed, "host", "Out of memory: Killed process 11021", "lower app.workers (2)"),
    (oom_under_unit_limit, "host", "its cgroup counts 2 OOM kills",
     "MemoryMax=268435456"),
    (release_removed, "release", "which does not exist (releases on the host: "
     "20260101000000 (good))", "fab deploy"),
    (log_dir_root_owned, "release", "root:root 0755: deploy may not write or enter it",
     f"sudo chown deploy:deploy {LOG} && sudo chmod 2770 {LOG} (as fab deploy sets"),
    (raised_in_a_view, "Rails app", "ActionView::Template::Error (boom)",
     "app/views/photos/index.html.erb:1"),
    (db_refuses_and_app_cannot_boot, "database", "refuses the app's credentials",
     "DATABASE_PASSWORD"),
    (migration_pending, "database", "have not run on itest@10.238.1.20:3306/itest_production: "
     "20990101000000_add_x.rb; / answers 500", "fab rails --only web2 -- db:migrate"),
])
def test_the_cause_its_evidence_and_a_fix_from_the_evidence(mutate, layer, evidence, fix):
    vs = verdicts(mutate)
    cause = first_broken(vs)
    assert (cause.layer, cause.role) == (layer, "cause"), cause
    assert evidence in cause.detail, cause.detail
    assert fix in cause.fix, cause.fix
    assert all(v.role == "consequence" for v in vs if v.status == "FAIL" and v is not cause)


def test_what_the_cause_breaks_is_listed_as_its_consequences():
    vs = verdicts(secret_missing)
    assert [(v.layer, v.role) for v in vs if v.status == "FAIL"] == [
        ("app server", "cause"), ("Rails app", "consequence")]
    vs = verdicts(db_refuses_and_app_cannot_boot)
    assert {v.layer: v.role for v in vs if v.status == "FAIL"} == {
        "app server": "consequence", "Rails app": "consequence", "database": "cause"}
    assert next(v for v in vs if v.layer == "app server").blame == "database"


def test_a_boot_error_in_the_apps_code_names_its_file_and_line():
    def raises_in_an_initializer(d):
        line = "/usr/lib/ruby/x.rb:5:in `fetch': key not found: :stripe (KeyError)"
        app_server_failing(d, {"line": line, "source": PATHS.server_log, "paths": []})
        rel = "/srv/sample/releases/1"
        d["server"]["log"] = ["I, [x] INFO -- : Refreshing Gem list", line,
                              f"\tfrom {rel}/config/initializers/pay.rb:3:in `<top>'",
                              f"\tfrom {rel}/config/environment.rb:5:in `<top>'",
                              "I, [y] INFO -- : next attempt"]
    cause = first_broken(verdicts(raises_in_an_initializer))
    assert cause.fix == ("the app fails as it boots, at config/initializers/pay.rb:3: fix it "
                         "and fab deploy")


def test_no_fix_when_the_evidence_shows_none():
    def unknown(d):
        app_server_failing(d, {"line": "something failed", "source": "x", "paths": []})
    cause = first_broken(verdicts(unknown))
    assert (cause.layer, cause.fix) == ("app server", "")

    def bare_500(d):
        d["http"]["root"] = {"code": "500", "body": "", "location": ""}
    assert first_broken(verdicts(bare_500)).fix == ""


def test_an_enabled_default_site_that_does_not_answer_shadows_nothing():
    def enabled_not_loaded(d):
        d["default_sites"] = ["/etc/nginx/sites-enabled/default"]
    assert first_broken(verdicts(enabled_not_loaded)) is None


def test_a_host_nothing_was_deployed_to_is_not_a_broken_layer():
    def never(d):
        d["release"].update(link=None, target=None, exists=False, releases=[],
                            unit_file=False, ledger={})
        app_server_failing(d, state="inactive", sub="dead")
        d["default_sites"] = ["/etc/nginx/sites-enabled/default"]
    vs = verdicts(never)
    assert first_broken(vs) is None
    nd = not_deployed(vs)
    assert (nd.layer, nd.status, nd.fix) == ("release", NOT_DEPLOYED, "fab deploy")
    assert {v.status for v in vs} == {"ok", "skip", NOT_DEPLOYED}


@pytest.mark.parametrize("lb, said, fix", [
    ({"state": "unused", "reason": "Target.NotRegistered",
      "description": "Target is not registered to the target group"},
     "unused: Target.NotRegistered (Target is not registered", "fab deploy registers it"),
    ({"state": "unhealthy", "reason": "Target.ResponseCodeMismatch",
      "description": "Health checks failed with these codes: [502]"},
     "Target.ResponseCodeMismatch (Health checks failed with these codes: [502])", "/up"),
    ({"state": "unhealthy", "reason": "Target.Timeout",
      "description": "Request timed out"}, "Target.Timeout", "security group"),
    ({"state": "draining", "reason": "Target.DeregistrationInProgress",
      "description": "Target deregistration is in progress"}, "draining", ""),
])
def test_an_unhealthy_target_with_its_reason(lb, said, fix):
    """moto answers healthy, or unused with Target.NotRegistered / Target.InvalidState: it
    runs no health checks, so the reasons of failed checks are tested here."""
    cause = first_broken(verdicts(lambda d: None, lb={"id": "i-2", **lb}))
    assert cause.layer == "load balancer" and said in cause.detail
    assert (fix in cause.fix) if fix else cause.fix == ""
