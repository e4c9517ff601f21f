"""`fab check` on real hosts: all green when healthy; each injected fault named by its layer.

Faults are injected on web2 only, one at a time, and undone before the next; web1 stays
healthy throughout, so each run also proves the diagnosis is per host.
"""

from __future__ import annotations

import json
import subprocess
from typing import NamedTuple

import pytest

from tests.conftest import run_fab, run_host_spec

SITE = "/etc/nginx/sites-available/sample"
SOCKDIR = "/srv/sample/shared/tmp/sockets"
SOCK = f"{SOCKDIR}/unicorn.sock"
ENV = "/etc/railsfab/sample.env"
UNIT = "sample-unicorn"
PID = "/srv/sample/shared/tmp/pids/unicorn.pid"
CONF = "/srv/sample/shared/config/unicorn.rb"
LOG = "/srv/sample/shared/log"
CURRENT = "/srv/sample/current"
VIEW = f"{CURRENT}/app/views/photos/index.html.erb"
MIGRATION = f"{CURRENT}/db/migrate/20990101000000_add_caption_to_photos.rb"
WORKERS = f"$(ps --ppid $(cat {PID}) -o pid=)"
DEPLOY_TO = "/srv/sample"
STORAGE = "/srv/sample/shared/storage"
SPECS = "/usr/share/rubygems-integration/all/specifications"
MANIFEST = f"$(ls {CURRENT}/public/assets/.sprockets-manifest-*.json)"
DROPIN = f"/etc/systemd/system/{UNIT}.service.d/rf-precheck.conf"
# an error line of an earlier start, with its time: never this start's evidence
OLD_LINE = ("E, [2026-01-01T00:00:00.000000 #1] ERROR -- : an error of an earlier start "
            "(rf-old-line)")
# a command that may fail because of the fault it completes (a restart that cannot start)
MAY_FAIL = " || true"
# The sandbox's systemd cannot kill a unit's cgroup ("Failed to kill control group"): a
# master that a failed start left running is ended by the PIDs its cgroup lists.
RESTART = (f"systemctl stop {UNIT}; for p in $(cat /sys/fs/cgroup/systemd/system.slice/"
           f"{UNIT}.service/cgroup.procs); do kill -9 $p; done; systemctl start {UNIT}")


def wait_listen(what: str) -> str:
    """Wait (5 s at most) until something listens on `what` (an ss filter)."""
    return f"for i in $(seq 50); do ss -Hl {what} | grep -q . && break; sleep 0.1; done"


def hold(unit: str, code: str, user: str = "root") -> str:
    """A stray process of its own unit (so it is undone by stopping that unit)."""
    return f"systemd-run --unit {unit} -p User={user} python3 -c '{code}'"


HOLD80 = ("import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, "
          "socket.SO_REUSEADDR, 1); s.bind((\"0.0.0.0\", 80)); s.listen(); time.sleep(3600)")
HOLDSOCK = (f"import socket,time; s=socket.socket(socket.AF_UNIX); s.bind(\"{SOCK}\"); "
            "s.listen(); time.sleep(3600)")


class Fault(NamedTuple):
    inject: str  # on web2, as root
    undo: str
    layer: str  # the first broken layer `fab check` must name
    evidence: str  # in its detail
    fix: str  # in its fix: the file, unit, path or command the evidence calls for


FAULTS = {
    "unicorn stopped": Fault(
        f"systemctl stop {UNIT}", f"systemctl start {UNIT}", "app server", "502",
        f"systemctl start {UNIT}"),
    "nginx stopped": Fault(
        "systemctl stop nginx", "systemctl start nginx", "nginx", "connection refused",
        "systemctl start nginx"),
    "default site shadows the app": Fault(
        f"sed -i 's/listen 80 default_server;/listen 80;/' {SITE} && "
        "ln -s /etc/nginx/sites-available/default /etc/nginx/sites-enabled/default && "
        "systemctl reload nginx",
        f"rm /etc/nginx/sites-enabled/default && sed -i 's/listen 80;/listen 80 default_server;/'"
        f" {SITE} && systemctl reload nginx",
        "site config", "default site", "/etc/nginx/sites-enabled/default"),
    "assets not precompiled": Fault(
        "mv /srv/sample/current/public/assets /srv/sample/assets.off",
        "mv /srv/sample/assets.off /srv/sample/current/public/assets",
        "assets", "no precompiled assets", "assets:precompile"),
    # (development writes its release's tmp/ and db/, read-only to the app: it cannot start)
    "unicorn in the wrong RAILS_ENV": Fault(
        f"sed -i \"s/^RAILS_ENV=.*/RAILS_ENV='development'/\" {ENV} && "
        f"(systemctl restart {UNIT}{MAY_FAIL})",
        f"sed -i \"s/^RAILS_ENV=.*/RAILS_ENV='production'/\" {ENV} && {RESTART}",
        "app server", "starts with RAILS_ENV=development", "fab deploy"),
    "nginx and unicorn on different sockets": Fault(
        f"sed -i 's|server unix:{SOCKDIR}/unicorn.sock|server unix:{SOCKDIR}/other.sock|' {SITE}"
        " && systemctl reload nginx",
        f"sed -i 's|server unix:{SOCKDIR}/other.sock|server unix:{SOCKDIR}/unicorn.sock|' {SITE}"
        " && systemctl reload nginx",
        "socket", "other.sock", "fab deploy"),
    "nginx denied the socket": Fault(
        f"chmod 2700 {SOCKDIR}", f"chmod 2750 {SOCKDIR}", "socket", "may not connect",
        f"sudo chmod 2750 {SOCKDIR} (as fab deploy sets it)"),
    "stale pid file": Fault(
        f"systemctl stop {UNIT} && echo 999999 > {PID} && chown sample: {PID}",
        f"rm -f {PID} && systemctl start {UNIT}", "app server", "stale pid file",
        f"rm {PID}"),
    "Rails host authorization blocks the ALB": Fault(
        f"echo \"RAILS_ALLOWED_HOSTS='example.com'\" >> {ENV} && systemctl restart {UNIT}",
        f"sed -i '/^RAILS_ALLOWED_HOSTS=/d' {ENV} && systemctl restart {UNIT}",
        "Rails app", "Blocked host", "config.hosts"),
    # --- found from generic evidence: no check below was written for its fault ----------
    "SECRET_KEY_BASE missing from the env file": Fault(
        f"grep '^SECRET_KEY_BASE=' {ENV} > /root/rf-secret && sed -i '/^SECRET_KEY_BASE=/d' "
        f"{ENV} && (systemctl restart {UNIT}{MAY_FAIL})",
        f"cat /root/rf-secret >> {ENV} && rm /root/rf-secret; {RESTART}",
        "app server", "secret_key_base", f"SECRET_KEY_BASE is not set in {ENV}"),
    "workers hung (SIGSTOP)": Fault(
        f"kill -STOP {WORKERS}", f"kill -CONT {WORKERS}{MAY_FAIL}",
        "app server", "no worker answered", "kill -CONT"),
    "unicorn.rb broken": Fault(
        f"cp {CONF} /root/rf-conf && echo 'worker_processes 2 2' >> {CONF} && "
        f"(systemctl restart {UNIT}{MAY_FAIL})",
        f"cp /root/rf-conf {CONF} && rm /root/rf-conf; {RESTART}",
        "app server", "syntax error", f"fab deploy writes {CONF}"),
    "an exception raised in a view": Fault(
        f"cp {VIEW} /root/rf-view && sed -i '1i <% raise ArgumentError, \"from a view\" %>' "
        f"{VIEW} && systemctl restart {UNIT}",
        f"cp /root/rf-view {VIEW} && rm /root/rf-view; {RESTART}",
        "Rails app", "ActionView::Template::Error (from a view)",
        "app/views/photos/index.html.erb:1"),
    "nginx config on disk broken, the old one still serving": Fault(
        f"cp {SITE} /root/rf-site && sed -i 's/server_tokens off;/server_tokens off; "
        f"no_such_directive on;/' {SITE}",
        f"cp /root/rf-site {SITE} && rm /root/rf-site", "nginx", "unknown directive", SITE),
    "nginx -t fails on a duplicate default server while / answers 200": Fault(
        "ln -s /etc/nginx/sites-available/default /etc/nginx/sites-enabled/default",
        "rm /etc/nginx/sites-enabled/default", "nginx", "duplicate default server",
        "/etc/nginx/sites-enabled/default"),
    "nginx stopped, another process serving :80": Fault(
        "systemctl stop nginx && " + hold("rf-other80", "import http.server as h; "
                                          "h.test(h.SimpleHTTPRequestHandler, port=80)")
        + " && " + wait_listen("-t 'sport = :80'"),
        "systemctl stop rf-other80 && systemctl start nginx", "nginx",
        "rf-other80.service", "systemctl stop rf-other80.service"),
    "nginx cannot start: :80 taken": Fault(
        "systemctl stop nginx && " + hold("rf-hold80", HOLD80) + " && "
        + wait_listen("-t 'sport = :80'") + f" && (systemctl start nginx{MAY_FAIL})",
        "systemctl stop rf-hold80 && systemctl reset-failed nginx; systemctl start nginx",
        "nginx", "Address already in use", "systemctl stop rf-hold80.service"),
    "the app's socket taken by another process": Fault(
        f"systemctl stop {UNIT} && rm -f {SOCK} && " + hold("rf-holdsock", HOLDSOCK, "sample")
        + " && " + wait_listen(f"-x 'src {SOCK}'") + f" && (systemctl start {UNIT}{MAY_FAIL})",
        f"systemctl stop {UNIT} rf-holdsock; rm -f {SOCK}; {RESTART}",
        "socket", "rf-holdsock.service", "systemctl stop rf-holdsock.service"),
    "the log dir's file system full": Fault(
        f"mount -t tmpfs -o size=4m,mode=2770,uid=$(id -u sample),gid=$(id -g deploy) rf-full "
        f"{LOG} && (dd if=/dev/zero of={LOG}/rf-filler bs=64k 2>/dev/null{MAY_FAIL}) && "
        f"systemctl restart {UNIT}",
        f"systemctl stop {UNIT}; umount -l {LOG}; {RESTART}",
        "host", "is full", f"truncate -s 0 {LOG}/rf-filler"),
    # The sandbox's hosts cannot enforce a memory limit (their memory cgroup is read-only):
    # the kernel's own OOM line is written as the kernel writes it, the worker really killed.
    "a worker OOM-killed": Fault(
        f"W=$(ps --ppid $(cat {PID}) -o pid= | head -1 | tr -d ' ') && logger -t kernel "
        "\"Out of memory: Killed process $W (ruby) total-vm:1048576kB, anon-rss:524288kB, "
        "file-rss:0kB, shmem-rss:0kB, UID:$(id -u sample) pgtables:1024kB oom_score_adj:0\" "
        "&& kill -KILL $W",
        RESTART, "host", "Out of memory: Killed process", "app.workers"),
    "current points to a removed release": Fault(
        f"readlink {CURRENT} > /root/rf-release && mv $(cat /root/rf-release) "
        f"/srv/sample/rf-release.off && (systemctl restart {UNIT}{MAY_FAIL})",
        "mv /srv/sample/rf-release.off $(cat /root/rf-release) && rm /root/rf-release; "
        + RESTART,
        "release", "which does not exist", "fab deploy"),
    "the log dir not writable by the app user": Fault(
        f"chown -R root:root {LOG} && chmod 755 {LOG} && chmod 644 {LOG}/* && "
        f"(systemctl restart {UNIT}{MAY_FAIL})",
        f"chown -R sample:deploy {LOG} && chmod 2770 {LOG} && chmod 660 {LOG}/*; {RESTART}",
        "release", f"may not write {LOG}",
        f"sudo chown sample:deploy {LOG} && sudo chmod 2770 {LOG} (as fab deploy sets it)"),
    # what a deploy whose migrate did not run leaves: code that needs a column, and the
    # migration that adds it, which schema_migrations does not list
    "a migration left pending": Fault(
        f"printf '%s\\n' 'class AddCaptionToPhotos < ActiveRecord::Migration[6.1]' '  def change'"
        f" '    add_column :photos, :caption, :string' '  end' 'end' > {MIGRATION} && "
        f"cp {VIEW} /root/rf-view && sed -i '1i <% Photo.where(caption: nil).count %>' {VIEW}"
        f" && systemctl restart {UNIT}",
        f"rm {MIGRATION} && cp /root/rf-view {VIEW} && rm /root/rf-view; {RESTART}",
        "database", "20990101000000_add_caption_to_photos.rb",
        "fab rails --only web2 -- db:migrate"),
    # systemd cannot start the unit at all: its own reason is the cause, not what the app's
    # logs hold of earlier starts
    "the env file is gone": Fault(
        f"mv {ENV} /root/rf-env && (systemctl restart {UNIT}{MAY_FAIL})",
        f"mv /root/rf-env {ENV}; {RESTART}",
        "app server", "Failed to load environment files", "fab deploy writes it"),
    # Rails finds no template it may read: a page with nothing on it (406 or 204), not a 500
    "the app may not read its views": Fault(
        f"chmod 0700 {CURRENT}/app/views/photos && {RESTART}",
        f"chmod 0750 {CURRENT}/app/views/photos; {RESTART}",
        "Rails app", "no template for PhotosController#index", "chmod g+rx"),
    # the password the app uses: DATABASE_URL's (Rails merges it over database.yml)
    "the database refuses the app's password": Fault(
        f"cp {ENV} /root/rf-env && sed -i \"s#^DATABASE_URL='\\([a-z0-9]*\\)://\\([^:]*\\):"
        f"[^@]*@#DATABASE_URL='\\1://\\2:wrong@#\" {ENV} && (systemctl restart {UNIT}{MAY_FAIL})",
        f"cp /root/rf-env {ENV} && rm /root/rf-env; {RESTART}",
        "database", "Access denied", "DATABASE_PASSWORD"),
    # --- issue 23: kinds no probe was written for; each fix follows from its evidence ----
    # deploy_to closed to nginx: the mode railsfab sets, never the folder handed to www-data
    "deploy_to closed to nginx's user": Fault(
        f"chmod 0700 {DEPLOY_TO}", f"chmod 0711 {DEPLOY_TO}", "socket",
        f"{DEPLOY_TO} is deploy:deploy 0700: www-data may not enter it",
        f"sudo chmod 0711 {DEPLOY_TO}"),
    # a gem of Debian's gone from the gem path: the package that provides it
    "a gem Bundler cannot find": Fault(
        f"mkdir -p /root/rf-spec && mv {SPECS}/mini_magick-*.gemspec /root/rf-spec/ && "
        f"(systemctl restart {UNIT}{MAY_FAIL})",
        f"mv /root/rf-spec/* {SPECS}/ && rmdir /root/rf-spec; {RESTART}",
        "app server", "Could not find mini_magick-",
        "sudo apt-get install --reinstall ruby-mini-magick"),
    # the release's precompiled assets lack one the layout asks for: the precompile step
    "an asset missing from the precompiled manifest": Fault(
        f"cp {MANIFEST} /root/rf-manifest && python3 -c 'import json,sys; p=sys.argv[1]; "
        "d=json.load(open(p)); d[\"assets\"].pop(\"application.css\"); "
        f"json.dump(d, open(p, \"w\"))' {MANIFEST} && systemctl restart {UNIT}",
        f"cp /root/rf-manifest {MANIFEST} && rm /root/rf-manifest; {RESTART}",
        "assets", 'The asset "application.css" is not present in the asset pipeline',
        "fab rails --only web2 -- assets:precompile"),
    # the env file names a database host nobody can resolve: not a process to kill
    "the database's host name does not resolve": Fault(
        f"cp {ENV} /root/rf-env && sed -i 's/@[0-9.]*:/@db.rf-missing.invalid:/; "
        f"s/^DATABASE_HOST=.*/DATABASE_HOST=db.rf-missing.invalid/' {ENV} && "
        f"(systemctl restart {UNIT}{MAY_FAIL})",
        f"cp /root/rf-env {ENV} && rm /root/rf-env; {RESTART}",
        "database", "db.rf-missing.invalid", "fab deploy writes DATABASE_URL"),
    # a drop-in nobody of railsfab wrote fails before the server runs; an older error line
    # in the server's log must not be taken for this start's
    "an ExecStartPre of a drop-in fails": Fault(
        f"mkdir -p $(dirname {DROPIN}) && printf '[Service]\\nExecStartPre=/bin/sh -c "
        f"\"echo rf-precheck failed >&2; exit 3\"\\n' > {DROPIN} && systemctl daemon-reload"
        f" && echo '{OLD_LINE}' >> {LOG}/unicorn.stderr.log && "
        f"(systemctl restart {UNIT}{MAY_FAIL})",
        f"rm -r $(dirname {DROPIN}) && systemctl daemon-reload; {RESTART}",
        "app server", "status=3", f"{DROPIN}"),
    # a folder the unit may write is gone: systemd cannot set up its namespace
    "a shared folder the app writes is gone": Fault(
        f"mv {STORAGE} /srv/sample/rf-storage.off && (systemctl restart {UNIT}{MAY_FAIL})",
        f"mv /srv/sample/rf-storage.off {STORAGE}; {RESTART}",
        "release", f"{STORAGE} does not exist",
        f"sudo install -d -o sample -g deploy -m 2770 {STORAGE}"),
    # the app's own S3 settings name a bucket that does not exist (the stage's is fine)
    "the app's bucket does not exist": Fault(
        f"cp {ENV} /root/rf-env && sed -i \"s/^S3_BUCKET=.*/S3_BUCKET='rf-no-such-bucket'/\" "
        f"{ENV} && systemctl restart {UNIT}",
        f"cp /root/rf-env {ENV} && rm /root/rf-env; {RESTART}",
        "S3", "bucket rf-no-such-bucket", "fab deploy (it writes"),
}


def ssh(sandbox, host: str, script: str) -> None:
    r = subprocess.run(["ssh", "-F", str(sandbox.ssh_config), "-o", "BatchMode=yes", host,
                        "sudo -n sh -c " + _q(script)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, f"{script}: {r.stderr}"


def _q(s: str) -> str:
    import shlex

    return shlex.quote(s)


def verdicts(stage_file) -> tuple[int, dict]:
    r = run_fab(stage_file, "check", "--json")
    return r.returncode, json.loads(r.stdout)


def first_broken(vs: list[dict]) -> dict | None:
    """The cause `fab check` names (the first broken layer, unless it blames another)."""
    return next((v for v in vs if v["role"] == "cause"), None)


@pytest.fixture(scope="module")
def healthy(stages):
    """unicorn behind the ALB: every layer, the load balancer's included, has a verdict."""
    return stages.unicorn(alb=True)


def test_healthy_hosts_are_all_green(healthy):
    r = run_fab(healthy, "check")
    assert r.returncode == 0, r.stdout
    assert "web1: all layers healthy" in r.stdout and "web2: all layers healthy" in r.stdout
    for layer in ("nginx", "site config", "socket", "app server", "Rails app", "assets",
                  "database", "S3", "load balancer"):
        assert layer in r.stdout
    assert "skip" not in r.stdout


@pytest.mark.parametrize("fault", FAULTS)
def test_injected_fault_is_named_with_its_fix(healthy, sandbox, fault):
    f = FAULTS[fault]
    ssh(sandbox, "web2", f.inject)
    try:
        code, result = verdicts(healthy)
    finally:
        ssh(sandbox, "web2", f.undo)
    assert code != 0
    broken = first_broken(result["web2"])
    assert broken is not None, result["web2"]
    assert broken["layer"] == f.layer, broken
    assert broken["role"] == "cause"
    assert f.evidence in broken["detail"], broken
    assert f.fix in broken["fix"], broken
    assert "rf-old-line" not in broken["detail"], broken  # an earlier start's evidence
    assert "www-data" not in broken["fix"], broken  # never a path handed to nginx's user
    assert first_broken(result["web1"]) is None  # the other host is unaffected
    assert verdicts(healthy)[0] == 0, "the fault was not undone"


def test_an_unregistered_target_is_named_with_its_reason(healthy, inv):
    """moto runs no health checks: it answers healthy, or unused with AWS's reason for a
    target that is not registered, which is what this injects (tests/unit has the reasons
    of failed health checks)."""
    from railsfab import rolling

    tg = rolling.TargetGroup(inv)
    web2 = tg.target(next(h for h in inv.hosts() if h.name == "web2"))
    tg.c.elbv2.deregister_targets(TargetGroupArn=tg.arn, Targets=[web2])
    try:
        code, result = verdicts(healthy)
    finally:
        tg.register([web2])
    assert code != 0
    broken = first_broken(result["web2"])
    assert (broken["layer"], broken["role"]) == ("load balancer", "cause"), broken
    assert f"{web2['Id']} is unused: Target.NotRegistered" in broken["detail"], broken
    assert "fab deploy registers it" in broken["fix"]
    assert first_broken(result["web1"]) is None
    assert verdicts(healthy)[0] == 0, "the target was not registered again"


def test_database_unreachable_is_the_database_layer(healthy, sandbox):
    ssh(sandbox, "db", "systemctl stop mariadb")
    try:
        code, result = verdicts(healthy)
    finally:
        ssh(sandbox, "db", "systemctl start mariadb")
    assert code != 0
    for host in ("web1", "web2"):
        broken = first_broken(result[host])
        assert broken["layer"] == "database", broken
        assert "Connection refused" in broken["detail"], broken
        assert broken["fix"].startswith("nothing listens on "), broken
        assert "start the database server" in broken["fix"], broken


def test_a_database_user_that_may_only_read_is_named_with_the_grant(healthy, sandbox, inv):
    db = inv.stage.app.database
    ssh(sandbox, "db", f"mysql -e \"REVOKE INSERT, UPDATE, DELETE ON \\`{db.name}\\`.* FROM "
                       f"'{db.user}'@'%'\"")
    try:
        code, result = verdicts(healthy)
    finally:
        ssh(sandbox, "db", f"mysql -e \"GRANT ALL PRIVILEGES ON \\`{db.name}\\`.* TO "
                           f"'{db.user}'@'%'\"")
    assert code != 0
    for host in ("web1", "web2"):
        broken = first_broken(result[host])
        assert broken["layer"] == "database", broken
        assert (f"the app's database user {db.user} may not write the app's data" in
                broken["detail"]) and "(the database): INSERT" in broken["detail"], broken
        assert broken["fix"].startswith(f"as an admin: GRANT SELECT, INSERT, UPDATE, DELETE ON "
                                        f"`{db.name}`.* TO '{db.user}'@'%'"), broken
    assert verdicts(healthy)[0] == 0, "the grant was not given back"


def test_a_table_gone_from_the_database_names_its_migration(healthy, sandbox, inv):
    """schema_migrations says the migration ran, the table is not there: the migration that
    creates it, its state, and how to run it again; not "check the DB host is up"."""
    db = inv.stage.app.database.name
    ssh(sandbox, "db", f"mysql -e 'RENAME TABLE `{db}`.photos TO `{db}`.rf_photos_off'")
    try:
        code, result = verdicts(healthy)
    finally:
        ssh(sandbox, "db", f"mysql -e 'RENAME TABLE `{db}`.rf_photos_off TO `{db}`.photos'")
    assert code != 0
    for host in ("web1", "web2"):
        broken = first_broken(result[host])
        assert broken["layer"] == "database", broken
        assert f"Table '{db}.photos' doesn't exist" in broken["detail"], broken
        assert "db/migrate/20261128130013_create_photos.rb creates photos" in broken["detail"]
        assert "recorded as run" in broken["detail"], broken
        assert broken["fix"].startswith(f"fab rails --only {host} -- db:migrate:status"), broken
        assert "db:migrate:up VERSION=20261128130013" in broken["fix"], broken
    assert verdicts(healthy)[0] == 0, "the table was not put back"


def test_an_nginx_site_edited_by_hand_is_a_warning(healthy, sandbox):
    ssh(sandbox, "web2", f"cp -p {SITE} /root/rf-site && sed -i 's/server_tokens off;/"
                         f"server_tokens off; client_max_body_size 1m;/' {SITE} && "
                         "systemctl reload nginx")
    try:
        code, result = verdicts(healthy)
    finally:
        ssh(sandbox, "web2", f"cp -p /root/rf-site {SITE} && rm /root/rf-site && "
                             "systemctl reload nginx")
    assert code == 0, result
    v = next(x for x in result["web2"] if x["layer"] == "site config")
    assert v["status"] == "warn", v
    assert "client_max_body_size 1m;" in v["detail"], v
    assert v["fix"].startswith("fab deploy"), v


def test_a_unit_changed_on_disk_and_not_reloaded_is_a_warning(healthy, sandbox):
    """The app works now; the next restart would run another unit: said, never green."""
    unit = f"/etc/systemd/system/{UNIT}.service"
    ssh(sandbox, "web2", f"cp -p {unit} /root/rf-unit && "
                         f"sed -i 's/^TimeoutStartSec=.*/TimeoutStartSec=121/' {unit}")
    try:
        r = run_fab(healthy, "check")
        code, result = verdicts(healthy)
    finally:
        ssh(sandbox, "web2", f"cp -p /root/rf-unit {unit} && rm /root/rf-unit && "
                             "systemctl daemon-reload")
    assert r.returncode == 0 and code == 0, r.stdout  # a warning fails nothing
    v = next(x for x in result["web2"] if x["layer"] == "app server")
    assert v["status"] == "warn", v
    assert f"{unit} changed on disk after systemd read it" in v["detail"], v
    assert "(the host has: 'TimeoutStartSec=121')" in v["detail"], v
    assert v["fix"].startswith("fab deploy"), v
    assert "web2: every layer works, with warnings" in r.stdout, r.stdout
    assert "web1: all layers healthy" in r.stdout


def test_spec_runs_with_plain_pytest_and_testinfra(healthy, sandbox, inv):
    """tests/host is a testinfra spec usable without fab: pytest --hosts=..."""
    r = run_host_spec(healthy, sandbox.ssh_config, ["web1", "web2"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert " passed" in r.stdout and "failed" not in r.stdout
