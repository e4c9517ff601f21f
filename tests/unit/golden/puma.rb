# Rendered by railsfab from templates/puma.rb.j2: edit the template, not this file.
# puma for shop (production). Paths come from railsfab.paths: the
# nginx upstream, systemd's PIDFile= and every restart use the same socket and pid file.

# Restarts start from here: a phased restart (USR1) chdirs to `current` before it forks
# each new worker, a hot restart (USR2) before it re-execs, so both pick up the release
# `current` points to now.
directory "/srv/shop/current"
rackup "/srv/shop/current/config.ru"
environment "production"

# Cluster mode, and no preload_app!: each worker loads the app itself, which is what makes
# phased (one worker at a time, zero-downtime) restarts possible.
workers 3
threads 4, 4
# Unix socket only. mode 0660 + the socket dir (/srv/shop/shared/tmp/sockets: group
# www-data, 2750) let nginx in and nobody else.
bind "unix:///srv/shop/shared/tmp/sockets/puma.sock?mode=0660&backlog=1024"
# nginx buffers whole requests before it connects, so a worker hands each connection
# straight to a thread instead of its reactor. A worker that a restart stops then finishes
# every connection it accepted; from the reactor, one whose request bytes had not arrived
# yet would be closed, and nginx would answer 502.
queue_requests false
pidfile "/srv/shop/shared/tmp/pids/puma.pid"
stdout_redirect "/srv/shop/shared/log/puma.stdout.log", "/srv/shop/shared/log/puma.stderr.log", true

# A worker that stops checking in for this long is killed and replaced.
worker_timeout 60
worker_boot_timeout 60
# TERM (systemctl stop, and every worker a restart replaces) lets workers finish their
# requests first, up to this long; what waits on the socket stays there for the others.
worker_shutdown_timeout 30

# A hot restart re-execs the master, whose new watchdog thread first pings after
# WatchdogSec/2: ping right before the exec, so the gap stays well under WatchdogSec.
on_restart do
  SdNotify.watchdog if defined?(SdNotify)
end
