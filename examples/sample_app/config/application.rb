require_relative "boot"

require "rails"
# Only the frameworks this app uses (no mailer, mailbox, text, cable, tests).
require "active_model/railtie"
require "active_job/railtie"
require "active_record/railtie"
require "active_storage/engine"
require "action_controller/railtie"
require "action_view/railtie"
require "sprockets/railtie"

# Require the gems listed in Gemfile, including any gems
# you've limited to :test, :development, or :production.
Bundler.require(*Rails.groups)

module SampleApp
  class Application < Rails::Application
    # Initialize configuration defaults for originally generated Rails version.
    config.load_defaults 6.1

    # Debian 12 ships ImageMagick; libvips is not required.
    config.active_storage.variant_processor = :mini_magick

    # Nothing here needs an encrypted credentials file or a master key.
    config.require_master_key = false

    config.generators.system_tests = nil
  end
end
