"""Every remote path of an app, derived in one place.

nginx's upstream, unicorn's `listen`, the pid file, systemd's PIDFile= and every stop or
restart command read these attributes, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from railsfab.inventory import App

# Directories in shared/ that every release links in (Capistrano's linked_dirs).
LINKED_DIRS = ("log", "tmp/pids", "tmp/sockets", "tmp/cache", "storage")
# The Gemfile railsfab bundles with, in each release: the app's, without the groups of
# app.bundle_without (templates/Gemfile.railsfab.j2).
GEMFILE = "Gemfile.railsfab"
META = ".railsfab-release.json"  # a release's ledger entry


@dataclass(frozen=True)
class Paths:
    app: str
    deploy_to: str
    app_server: str = "unicorn"
    gems: str = "debian"  # app.gems: Debian's packages, or Bundler from the app's lockfile

    @classmethod
    def of(cls, app: App) -> Paths:
        return cls(app.name, app.deploy_to, app.app_server, app.gems)

    @property
    def releases(self) -> str:
        return f"{self.deploy_to}/releases"

    @property
    def failed_releases(self) -> str:
        return f"{self.deploy_to}/releases-failed"

    def release(self, release_id: str) -> str:
        return f"{self.releases}/{release_id}"

    @property
    def current(self) -> str:
        return f"{self.deploy_to}/current"

    @property
    def gemfile(self) -> str:
        """BUNDLE_GEMFILE of the app server and every Rails command (in `current`)."""
        return self.gemfile_in(self.current)

    def gemfile_in(self, release_dir: str) -> str:
        """Debian's gems: railsfab's Gemfile.railsfab; Bundler's: the app's own Gemfile."""
        return f"{release_dir}/{GEMFILE if self.gems == 'debian' else 'Gemfile'}"

    @property
    def bundle(self) -> str:
        """BUNDLE_PATH with app.gems: bundler: shared by every release."""
        return f"{self.shared}/bundle"

    @property
    def bundle_config(self) -> str:
        """BUNDLE_APP_CONFIG with app.gems: bundler (its `config`: deployment mode, path,
        groups left out, mirror), read by Bundler in every command and the app server."""
        return f"{self.shared_config}/bundle"

    @property
    def gem_home(self) -> str:
        """GEM_HOME with app.gems: debian: where Bundler installs what Debian's packages do
        not hold (gems from the app's vendor/cache, path and git gems' executables), shared
        by every release; Debian's gems stay visible (GEM_PATH is left to RubyGems)."""
        return f"{self.shared}/gems"

    def bundler_env(self, release_dir: str) -> dict[str, str]:
        """What every Bundler-run command in `release_dir` needs in its environment."""
        env = {"BUNDLE_GEMFILE": self.gemfile_in(release_dir)}
        if self.gems == "bundler":
            env["BUNDLE_APP_CONFIG"] = self.bundle_config
        else:
            env["GEM_HOME"] = self.gem_home
        return env

    @property
    def shared(self) -> str:
        return f"{self.deploy_to}/shared"

    @property
    def shared_config(self) -> str:
        return f"{self.shared}/config"

    @property
    def socket(self) -> str:
        return f"{self.shared}/tmp/sockets/{self.app_server}.sock"

    @property
    def pid(self) -> str:
        return f"{self.shared}/tmp/pids/{self.app_server}.pid"

    @property
    def server_config(self) -> str:
        return f"{self.shared_config}/{self.app_server}.rb"

    @property
    def server_log(self) -> str:
        return f"{self.shared}/log/{self.app_server}.stderr.log"

    @property
    def server_stdout(self) -> str:
        return f"{self.shared}/log/{self.app_server}.stdout.log"

    def rails_log(self, rails_env: str) -> str:
        """The app's own log (Rails writes log/<env>.log, linked to shared/log)."""
        return f"{self.shared}/log/{rails_env}.log"

    @property
    def unit_name(self) -> str:
        return f"{self.app}-{self.app_server}.service"

    @property
    def unit(self) -> str:
        return f"/etc/systemd/system/{self.unit_name}"

    @property
    def env_file(self) -> str:
        """Secrets and settings for the app: root-owned 0600, read by systemd, not the app user."""
        return f"/etc/railsfab/{self.app}.env"

    @property
    def nginx_site(self) -> str:
        return f"/etc/nginx/sites-available/{self.app}"

    @property
    def nginx_site_enabled(self) -> str:
        return f"/etc/nginx/sites-enabled/{self.app}"

    @property
    def nginx_access_log(self) -> str:
        """The app's own access log (its site's `access_log`, in the timed format railsfab
        reads to judge a canary: railsfab.traffic). Debian's logrotate rotates every
        /var/log/nginx/*.log, this one with them."""
        return f"/var/log/nginx/{self.app}.access.log"

    @property
    def nginx_default_sites(self) -> tuple[str, ...]:
        """The stock server blocks that would shadow the app (Debian/Ubuntu and nginx.org)."""
        return ("/etc/nginx/sites-enabled/default", "/etc/nginx/conf.d/default.conf")

    @property
    def nginx_config(self) -> tuple[str, ...]:
        """What the app's nginx config is made of on disk, for "has the running nginx loaded
        it?": its site, the link enabling it, and the folders the default sites live in
        (removing or adding one changes the folder)."""
        return (self.nginx_site, self.nginx_site_enabled, "/etc/nginx/sites-enabled",
                "/etc/nginx/conf.d")

    @property
    def lock(self) -> str:
        """Deploy lock (a directory: mkdir is atomic), outside deploy_to so it works before
        the first deploy created it."""
        return f"/var/lib/railsfab/locks/{self.app}"
