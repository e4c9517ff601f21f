require "active_support/core_ext/integer/time"

# Everything deployment-specific comes from the environment (see README.md).
Rails.application.configure do
  config.cache_classes = true
  config.eager_load = true

  config.consider_all_requests_local       = false
  config.action_controller.perform_caching = true

  # secret_key_base comes from ENV["SECRET_KEY_BASE"]; there is no
  # config/credentials.yml.enc and no master key.
  config.require_master_key = false

  # Host authorization. RAILS_ALLOWED_HOSTS is a comma-separated list
  # ("example.com,.example.org"; a leading dot also allows subdomains).
  # Unset: no Host check at all (the Rails 6.1 production default).
  # The health check is always let through: a load balancer sends the
  # instance IP as Host.
  ENV.fetch("RAILS_ALLOWED_HOSTS", "").split(",").map(&:strip).reject(&:empty?).each do |host|
    config.hosts << host
  end
  config.host_authorization = { exclude: ->(request) { request.path == "/up" } }

  # Nginx serves /assets and the rest of public/; set this to let Rails do it.
  config.public_file_server.enabled = ENV["RAILS_SERVE_STATIC_FILES"].present?

  # Assets are precompiled at deploy time (bin/rails assets:precompile).
  config.assets.compile = false

  # Uploaded files: "local" (Disk, storage/) or "amazon" (S3), see config/storage.yml.
  config.active_storage.service = ENV.fetch("ACTIVE_STORAGE_SERVICE", "local").to_sym
  # Serve files through the app (/rails/active_storage/.../proxy/...) instead of
  # redirecting browsers to the bucket: works with a private, VPC-endpoint-only bucket.
  config.active_storage.resolve_model_to_route = :rails_storage_proxy

  # TLS ends in front of the app (load balancer or nginx).
  config.force_ssl = false

  config.log_level = :info
  config.log_tags = [ :request_id ]
  config.log_formatter = ::Logger::Formatter.new

  if ENV["RAILS_LOG_TO_STDOUT"].present?
    logger           = ActiveSupport::Logger.new(STDOUT)
    logger.formatter = config.log_formatter
    config.logger    = ActiveSupport::TaggedLogging.new(logger)
  end

  config.i18n.fallbacks = true

  config.active_support.deprecation = :notify
  config.active_support.disallowed_deprecation = :log
  config.active_support.disallowed_deprecation_warnings = []

  config.active_record.dump_schema_after_migration = false
end
