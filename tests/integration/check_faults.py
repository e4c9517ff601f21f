"""The faults tests/integration/test_check.py injects on web2, one at a time, each with its
undoing and what `fab check` must say: the first broken layer, a line of its evidence and
its fix."""

from __future__ import annotations

from typing import NamedTuple

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
# systemd refuses a 6th start within 10 s (StartLimitBurst): the counter is reset first.
RESTART = (f"systemctl stop {UNIT}; for p in $(cat /sys/fs/cgroup/systemd/system.slice/"
           f"{UNIT}.service/cgroup.procs); do kill -9 $p; done; systemctl reset-failed {UNIT}; "
           f"systemctl start {UNIT}")


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
        f"systemctl restart --no-block {UNIT} && sleep 3",
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
        "app server", "exit 3 exited with status 3", f"{DROPIN}"),
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
