# Rendered by railsfab from templates/unicorn.rb.j2: edit the template, not this file.
# unicorn for shop (production). Paths come from railsfab.paths: the
# nginx upstream, systemd's PIDFile= and every restart use the same socket and pid file.

worker_processes 3
working_directory "/srv/shop/current"

# Unix socket only; its directory (/srv/shop/shared/tmp/sockets) lets the deploy user
# and nginx's group in, nobody else.
listen "/srv/shop/shared/tmp/sockets/unicorn.sock", backlog: 1024
pid "/srv/shop/shared/tmp/pids/unicorn.pid"
timeout 30

stderr_path "/srv/shop/shared/log/unicorn.stderr.log"
stdout_path "/srv/shop/shared/log/unicorn.stdout.log"

# Load the app once in the master; workers fork from it (copy-on-write, fast respawns).
preload_app true

# A re-executed master (USR2) must load the Gemfile of the release `current` points to
# now, not the one it was first started from.
before_exec do |_server|
  ENV["BUNDLE_GEMFILE"] = "/srv/shop/current/Gemfile.railsfab"
end

before_fork do |_server, _worker|
  # The master's database connection must not be shared with workers.
  defined?(ActiveRecord::Base) && ActiveRecord::Base.connection.disconnect!
end

after_fork do |_server, _worker|
  defined?(ActiveRecord::Base) && ActiveRecord::Base.establish_connection
end
