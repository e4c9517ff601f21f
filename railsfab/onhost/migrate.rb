# Run on the migrate host by `bin/rails runner 'eval($stdin.read)'`, in the new release: the
# release says which database it will use (its config/database.yml merged with DATABASE_URL,
# as Rails does it) and migrates in the same boot, only when that is the stage's database.
want = ENV.fetch("RAILSFAB_DATABASE").split(" ", 3)
config = ActiveRecord::Base.connection_db_config
hash = config.configuration_hash
got = [hash[:host], hash[:database], hash[:username]].map(&:to_s)
unless got == want
  yml = Rails.root.join("config", "database.yml")
  file = if File.symlink?(yml) then "config/database.yml (a link to #{File.readlink(yml)})"
         elsif File.exist?(yml) then "config/database.yml"
         else "DATABASE_URL"
         end
  $stderr.puts "railsfab-database: " + JSON.generate(
    "file" => file, "env" => config.env_name, "name" => config.name, "got" => got)
  exit 3
end
require "rake"
Rails.application.load_tasks
begin
  Rake::Task["db:migrate"].invoke
rescue StandardError => e
  # as rake says it, and last: the failure shows the end of what was written
  $stderr.puts e.backtrace.first(5).map { |frame| "  #{frame}" }
  $stderr.puts "rake aborted! #{e.class}: #{e.message}"
  exit 1
end
