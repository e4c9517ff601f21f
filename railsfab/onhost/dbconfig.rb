# fab check: the database settings the release will use, as Rails makes them (its
# config/database.yml, ERB and all, merged with DATABASE_URL), without booting the app. Run
# by the app's Ruby, with the app's bundle, as the app's user, in the release.
require "bundler/setup"
require "erb"
require "json"
require "yaml"
require "active_record"
require "active_record/database_configurations"

path = File.join(Dir.pwd, "config", "database.yml")
yaml, file = {}, nil
if File.exist?(path)
  text = ERB.new(File.read(path)).result
  yaml = (YAML.respond_to?(:unsafe_load) ? YAML.unsafe_load(text) : YAML.load(text)) || {}
  file = File.symlink?(path) ? "config/database.yml (a link to #{File.readlink(path)})" : "config/database.yml"
end
env = ENV.fetch("RAILS_ENV")
configs = ActiveRecord::DatabaseConfigurations.new(yaml)
config = configs.configs_for(env_name: env, name: "primary") || Array(configs.configs_for(env_name: env)).first
abort "no #{env} database in #{file || 'DATABASE_URL'}" unless config
hash = config.configuration_hash
url = ENV["DATABASE_URL"].to_s
from_url = !url.empty? && config.respond_to?(:url) && config.url == url
puts JSON.generate(
  "adapter" => hash[:adapter], "host" => hash[:host], "port" => hash[:port],
  "database" => hash[:database], "username" => hash[:username], "password" => hash[:password],
  "source" => from_url ? (file ? "DATABASE_URL (over #{file})" : "DATABASE_URL") : file)
