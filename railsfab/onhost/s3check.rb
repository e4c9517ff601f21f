# fab check: a put, get and delete in S3 with the app's own settings (the service its
# config/storage.yml names, ERB and all, with the app's env file), by the app's own
# aws-sdk-s3, as the app's user, in the release. Prints one JSON line.
require "bundler/setup"
require "erb"
require "json"
require "pathname"
require "securerandom"
require "yaml"
require "active_support"
require "active_support/core_ext/object/blank"
require "active_support/core_ext/string"

# storage.yml's ERB asks Rails.root and Rails.env (Disk services), and may ask its
# credentials (even in a commented line: ERB runs first): the check does not read those
module Rails
  # Rails.application.credentials.dig(...) and the like: nothing, and that it was asked
  class Unread < BasicObject
    def method_missing(name, *)
      %i[dig [] fetch].include?(name) ? nil : self
    end

    def respond_to_missing?(*) = true
  end

  def self.root = Pathname.new(Dir.pwd)
  def self.env = ENV.fetch("RAILS_ENV", "production")
  def self.application = Unread.new
end

t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
said = { "service" => nil }
begin
  text = ERB.new(File.read("config/storage.yml")).result
  services = (YAML.respond_to?(:unsafe_load) ? YAML.unsafe_load(text) : YAML.load(text)) || {}
  name = ENV["ACTIVE_STORAGE_SERVICE"].to_s
  name = services.keys.find { |k| services[k].is_a?(Hash) && services[k]["service"] == "S3" } if name.empty?
  conf = services[name]
  said["service"] = name
  unless conf.is_a?(Hash) && conf["service"] == "S3"
    puts JSON.generate(said.merge("skip" => "the app's storage service #{name.inspect} is not S3"))
    exit
  end
  said.merge!("bucket" => conf["bucket"].to_s, "region" => conf["region"].to_s,
              "endpoint" => conf["endpoint"].to_s)
  if said["bucket"].empty?  # from Rails credentials, which the check does not read
    puts JSON.generate(said.merge("skip" => "its bucket is not in config/storage.yml or the env"))
    exit
  end
  require "aws-sdk-s3"
  options = conf.reject { |k, _| %w[service bucket public upload].include?(k) }
                .transform_keys(&:to_sym)
  options.delete(:endpoint) if options[:endpoint].to_s.empty?
  client = Aws::S3::Client.new(**options)
  key = "railsfab-check/#{SecureRandom.hex(8)}"
  client.put_object(bucket: conf["bucket"], key: key, body: "railsfab check")
  got = client.get_object(bucket: conf["bucket"], key: key).body.read
  client.delete_object(bucket: conf["bucket"], key: key)
  said["error"] = "read back #{got.inspect}" unless got == "railsfab check"
rescue LoadError => e
  said["error"] = "cannot load #{e.path || e.message} from the app's bundle"
rescue StandardError => e
  said["error"] = "#{e.class.name.split("::").last}: #{e.message}"[0, 300]
end
said["ms"] = ((Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0) * 1000).round
puts JSON.generate(said)
