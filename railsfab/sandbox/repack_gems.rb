# Repack the gems Debian's ruby-* packages installed as .gem files, for the sandbox's gem
# mirror (rubygems.org is out of reach here). Runs with the Debian release's own Ruby, inside
# a chroot of the sandbox's base image in which those packages are installed.
#
#   ruby repack_gems.rb OUT_DIR
#
# Each installed gem becomes OUT_DIR/gems/NAME-VERSION[-PLATFORM].gem, built with RubyGems'
# own Gem::Package from the files Debian installed: the gem's own directory when Debian kept
# one, else the files of the package that owns its gemspec (dpkg -L), which gem2deb puts in
# vendor_ruby (those become the gem's lib/, its executables its bin/). A gem Debian compiled (its extension
# directory holds .so files) becomes a platform gem (x86_64-linux) carrying them in lib/: it
# loads on hosts of the same Debian release and needs no compiler there. OUT_DIR/index.json
# lists each gem's name, version, platform, dependencies, Ruby requirement and SHA-256, for
# the compact index railsfab writes.
require "rubygems/package"
require "fileutils"
require "digest"
require "json"
require "tmpdir"

out = File.expand_path(ARGV.fetch(0))
FileUtils.mkdir_p(File.join(out, "gems"))
index = []

# The package files of a gem Debian installed without a gem directory, by their place in
# the gem: {"lib/x.rb" => "/usr/lib/ruby/vendor_ruby/x.rb", "bin/tool" => "/usr/bin/tool"}.
def debian_files(spec)
  owner = `dpkg -S #{spec.loaded_from} 2>/dev/null`.split(":").first
  return {} unless owner

  files = {}
  `dpkg -L #{owner}`.split("\n").each do |f|
    next unless File.file?(f)

    if (m = f.match(%r{\A/usr/lib/ruby/vendor_ruby/(.+)\z}) ||
            f.match(%r{\A/usr/lib/[^/]+/ruby/vendor_ruby/[^/]+/(.+)\z}))
      files["lib/#{m[1]}"] = f
    elsif (m = f.match(%r{\A/usr/bin/(.+)\z})) && spec.executables.include?(m[1])
      files["#{spec.bindir}/#{m[1]}"] = f
    end
  end
  files
end

# Stage a gem's files in `stage`; true when it carries compiled code.
def stage_files(spec, stage)
  if File.directory?(spec.full_gem_path)
    FileUtils.cp_r(File.join(spec.full_gem_path, "."), stage)
    compiled = Dir.glob("**/*.so", base: spec.extension_dir)
    compiled.each do |so|
      FileUtils.mkdir_p(File.join(stage, "lib", File.dirname(so)))
      FileUtils.cp(File.join(spec.extension_dir, so), File.join(stage, "lib", so))
    end
    return !compiled.empty?
  end
  files = debian_files(spec)
  files.each do |rel, src|
    FileUtils.mkdir_p(File.join(stage, File.dirname(rel)))
    FileUtils.cp(src, File.join(stage, rel))
  end
  files.keys.any? { |rel| rel.end_with?(".so") }
end

Gem::Specification.each do |spec|
  next if spec.default_gem?

  Dir.mktmpdir do |stage|
    compiled = stage_files(spec, stage)
    staged = Dir.glob("**/*", File::FNM_DOTMATCH, base: stage)
                .reject { |f| File.directory?(File.join(stage, f)) }
    # Nothing is compiled on the hosts: a gem with an extension ships Debian's build of it
    # (a platform gem), or not at all when none was found.
    if !spec.extensions.empty? && !compiled
      warn "skipped #{spec.full_name}: an extension, and no compiled .so found"
      next
    end

    packed = spec.dup
    # before `files`, whose getter folds these into it: only what was staged may be listed
    packed.extensions = []
    packed.test_files = []
    packed.extra_rdoc_files = []
    packed.executables = spec.executables.select { |e| staged.include?("#{spec.bindir}/#{e}") }
    packed.files = staged
    packed.require_paths = ["lib"] unless File.directory?(spec.full_gem_path)
    packed.platform = Gem::Platform.local if compiled
    file = Dir.chdir(stage) do
      Gem::DefaultUserInteraction.use_ui(Gem::SilentUI.new) { Gem::Package.build(packed) }
    end
    dest = File.join(out, "gems", File.basename(file))
    FileUtils.mv(File.join(stage, file), dest)
    index << {
      name: packed.name, version: packed.version.to_s, platform: packed.platform.to_s,
      dependencies: packed.runtime_dependencies.map { |d| [d.name, d.requirement.to_s] },
      ruby: packed.required_ruby_version.to_s,
      rubygems: packed.required_rubygems_version.to_s,
      sha256: Digest::SHA256.file(dest).hexdigest,
    }
  end
end

File.write(File.join(out, "index.json"), JSON.pretty_generate(index))
puts "#{index.size} gems"
