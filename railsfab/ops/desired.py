"""What a deploy wants every web host to look like, computed once on the controller before
the first SSH connection: rendered files, the env file, the release and its digests."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from dataclasses import dataclass, field

from railsfab import appenv, appserver, gems, linked, render
from railsfab import build as js_build
from railsfab.appserver import AppServer
from railsfab.appserver.puma import SD_NOTIFY_GEM
from railsfab.artifact import Artifact
from railsfab.build import Build
from railsfab.errors import ConfigError
from railsfab.facts import Facts
from railsfab.inventory import App, Inventory, Stage
from railsfab.linked import Linked
from railsfab.paths import GEMFILE, META, Paths
from railsfab.secrets import app_secrets, env_file_text
from railsfab.source import Source

BASE_PACKAGES = ("ruby", "ruby-bundler", "curl")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Digests:
    """What a release is made of, as hashes: each decides whether its step must run."""

    release: str  # the app's files plus what railsfab renders into the release
    gems: str
    assets: str
    migrations: str


@dataclass(frozen=True)
class Serving:
    """The app as it serves: what rollback and restart need (and deploy, among the rest)."""

    app: App
    paths: Paths
    server: AppServer
    https: bool  # clients come through TLS: railsfab's own requests say so too

    @classmethod
    def of(cls, stage: Stage) -> Serving:
        paths = Paths.of(stage.app)
        return cls(stage.app, paths, appserver.for_app(stage.app, paths, https=stage.https),
                   stage.https)


@dataclass(frozen=True)
class Desired(Serving):
    retired: tuple[AppServer, ...]  # servers the stage does not run any more
    packages: tuple[str, ...]
    apt_proxy: str | None
    env_text: str
    files: dict[str, str]  # server_config, unit and (behind nginx) site
    storage_yml: str | None  # rendered into the release (the app has no S3 service)
    storage_note: str | None  # what the deploy says about config/storage.yml
    env_note: str  # names the app's config reads that nothing sets (a warning)
    linked: tuple[Linked, ...]  # app.linked_files: kept in shared/, linked into each release
    release: str  # the id a new release gets
    digests: Digests
    ruby: tuple[str, ...] | None = None  # the Gemfile's ruby requirement
    gemfile: str = ""  # Gemfile.railsfab: the app's Gemfile without app.bundle_without
    bundle_config: str = ""  # app.gems: bundler: Bundler's config (deployment mode)
    source: Source | None = field(default=None, repr=False, compare=False)
    # app.artifact: s3: the archive goes through the stage's bucket (railsfab.artifact)
    artifact: Artifact | None = field(default=None, repr=False, compare=False)
    build: Build | None = None  # app.build: the JavaScript/CSS build, run here once
    built: dict[str, bytes] = field(default_factory=dict, repr=False, compare=False)
    # gems: debian with puma: the files for hosts whose puma speaks systemd's notify (>= 6)
    notify_files: dict[str, str] | None = field(default=None, repr=False, compare=False)

    def meta(self, state: str) -> dict:
        """The release's ledger entry (.railsfab-release.json)."""
        return {"source": self.digests.release, "gems": self.digests.gems,
                "assets": self.digests.assets, "migrations": self.digests.migrations,
                "state": state, "app_server": self.app.app_server,
                "rails_env": self.app.rails_env}

    def release_archive(self) -> bytes:
        """The app's files plus what railsfab puts into a release: Gemfile.railsfab,
        config/storage.yml (when rendered) and the ledger entry, state `prepared`."""
        extra: dict[str, str | bytes] = {
            **self.built, META: json.dumps({"id": self.release, **self.meta("prepared")})}
        if self.gemfile:
            extra[GEMFILE] = self.gemfile
        if self.storage_yml:
            extra["config/storage.yml"] = self.storage_yml
        return self.source.archive(extra)


def _storage(inv: Inventory, templates, source: Source) -> Storage:
    """The app's own config/storage.yml wins when it has an S3 service: railsfab supplies only
    the env (bucket, region, endpoint), under the names that service reads. Else railsfab
    renders one into the release, and says so."""
    a = inv.stage.aws
    if not a.bucket:
        return Storage(None, None, "amazon", {})
    envs = "S3_BUCKET, AWS_REGION" + (", AWS_ENDPOINT_URL" if a.endpoint_url else "")
    own_yml = source.text("config/storage.yml")
    own = appenv.s3_service(own_yml)
    served = "; " + appenv.delivery(source, inv.stage.app.rails_env)
    if own:
        names = appenv.storage_names(own_yml, own)
        return Storage(None, (f"the app's own config/storage.yml is kept (S3 service {own!r}"
                              f"{appenv.mapped_note(names)}); railsfab supplies {envs} and "
                              f"ACTIVE_STORAGE_SERVICE={own} in the env file{served}"),
                       own, names, True)
    text = render.render(templates, "storage.yml.j2", app=inv.stage.app, aws=a,
                         stage=inv.stage_name)
    return Storage(text, (f"config/storage.yml rendered by railsfab into each release (S3 "
                          f"service 'amazon', bucket {a.bucket}): the app has none with an S3 "
                          f"service{served}"), "amazon", {})


@dataclass(frozen=True)
class Storage:
    text: str | None  # rendered into the release (the app has no S3 service)
    note: str | None  # what the deploy says about config/storage.yml
    service: str  # ACTIVE_STORAGE_SERVICE
    names: dict[str, str]  # the app's own S3 service: {key: the env name it reads}
    own: bool = False  # the app's own storage.yml's S3 service is used


def _env(inv: Inventory, source: Source, storage: Storage,
         secrets: dict[str, str]) -> tuple[str, str]:
    """(the env file, a warning): names the app reads without a default that the env file
    will not set fail here, before any host is touched."""
    app = inv.stage.app
    env = appenv.app_env(inv, secrets, storage.service, storage.names)
    config = {e.rel: e.data.decode(errors="replace") for e in source.files
              if e.rel.startswith("config/") and not e.rel.startswith("config/locales/")
              and e.rel.endswith((".rb", ".yml", ".yaml"))}
    skip = {"config/database.yml"} if app.database else set()
    if not storage.own:
        skip.add("config/storage.yml")
    uses = appenv.env_uses(config, app.rails_env, skip_yml=skip,
                           used={"config/storage.yml": storage.service})
    error, warning = appenv.preflight(uses, set(env), inv.path.name)
    if error:
        raise ConfigError(f"{app.source}: {error}", fix=(
            f"set it in stages.{inv.stage_name}.app.env of {inv.path.name} (or in the secrets "
            "file, if it is secret), or give it a default in the app"))
    return env_file_text(env), warning


def _gems(inv: Inventory, templates, paths: Paths,
          source: Source) -> tuple[str, str, tuple[str, ...]]:
    """(Gemfile.railsfab, Bundler's config, build packages): the first for Debian's gems,
    the others for Bundler's."""
    app = inv.stage.app
    if app.gems == "debian":
        return render.render(templates, "Gemfile.railsfab.j2",
                             without=app.bundle_without.split(":")), "", ()
    lock = source.text("Gemfile.lock")
    if lock is None:
        raise ConfigError(
            f"{inv.path.name}: stages.{inv.stage_name}.app.gems is bundler, but "
            f"{app.source} has no Gemfile.lock that ships",
            fix="commit the Gemfile.lock Bundler wrote (and keep it out of .gitignore), or "
                "use gems: debian")
    platforms = gems.lock_platforms(lock)
    if platforms and not set(platforms) & set(gems.LINUX):
        raise ConfigError(
            f"{app.source}/Gemfile.lock was resolved for {', '.join(platforms)} only: Bundler "
            "in deployment mode refuses it on Linux hosts",
            fix="`bundle lock --add-platform x86_64-linux` (aarch64-linux for Graviton hosts), "
                "commit the Gemfile.lock, deploy again")
    config = gems.bundle_config(path=paths.bundle, without=app.bundle_without,
                                mirror=app.gem_source_mirror)
    return "", config, tuple(gems.build_packages(lock))


def _server_gem(inv: Inventory, source: Source) -> None:
    """`bundle exec unicorn` (or puma) loads only what the Gemfile lists."""
    app = inv.stage.app
    gemfile = source.text("Gemfile") or ""
    if not gems.server_gem_missing(gemfile, app.app_server, app.bundle_without):
        return
    other = "puma" if app.app_server == "unicorn" else "unicorn"
    has = "" if gems.server_gem_missing(gemfile, other, app.bundle_without) else \
        f" (it has {other})"
    raise ConfigError(
        f"{app.source}: app_server is {app.app_server}, but the Gemfile has no "
        f"`gem \"{app.app_server}\"`{has} outside the groups left out "
        f"({app.bundle_without}): the app server could not start",
        fix=f"add `gem \"{app.app_server}\"` to the Gemfile"
            + (f", or set app_server: {other} in stage {inv.stage_name} of {inv.path.name}"
               if has else ""))


def build(inv: Inventory, *, release: str | None = None) -> Desired:
    """Everything local is read and checked here, before any SSH connection."""
    app = inv.stage.app
    paths = Paths.of(app)
    server = appserver.for_app(app, paths, https=inv.stage.https)
    source = Source(inv.resolve(app.source), ref=app.ref,
                    linked=tuple(lf.path for lf in app.linked_files))
    templates = render.environment(inv.root)
    storage = _storage(inv, templates, source)
    storage_yml = storage.text
    secrets = app_secrets(inv.resolve(app.secrets_file) if app.secrets_file else None)
    env_text, env_note = _env(inv, source, storage, secrets)
    linked_files = linked.resolve(inv, secrets, paths.shared)
    # gems: debian: the puma the hosts will run is Debian's (5 on Debian 12, 6 on 13), not
    # the lockfile's: without sd_notify, Type=notify is chosen from the hosts' facts
    # (settled_puma), so both renderings are kept
    hosts_decide = app.gems == "debian" and app.app_server == "puma" and \
        not re.search(SD_NOTIFY_GEM, source.text("Gemfile") or "", re.M)
    files = server.files(templates, notify=not hosts_decide and server.notify(source.root))
    notify_files = server.files(templates, notify=True) if hosts_decide else None
    front = ("nginx",) if app.nginx else ()
    _server_gem(inv, source)
    gemfile, bundle_config, build = _gems(inv, templates, paths, source)
    packages = tuple(dict.fromkeys(front + BASE_PACKAGES + tuple(app.packages) + build))
    # Linked files' contents count keyed with the secrets: a ledger on the hosts holds these
    # digests, and a linked file may hold a password.
    key = "".join(f"{k}={v}\n" for k, v in sorted(secrets.items())).encode()
    marks = "".join(x.path + x.mark(key) for x in linked_files)
    # What decides the database the release uses: when it changes, the migrate step (which
    # asks the release) runs even without a new migration.
    db = app.database
    database = (source.text("config/database.yml") or "") + \
        "".join(x.mark(key) for x in linked_files if x.path == "config/database.yml") + \
        (f"{db.adapter} {db.host} {db.port} {db.name} {db.user}" if db else "")
    digests = Digests(release=sha(source.digest + (storage_yml or "") + gemfile + marks),
                      gems=sha(source.gems_digest + gemfile + bundle_config),
                      assets=source.assets_digest,
                      migrations=sha(source.migrations_digest + database) if db
                      else source.migrations_digest)
    return Desired(
        app=app, paths=paths, server=server, https=inv.stage.https,
        retired=tuple(appserver.others(app, paths, https=inv.stage.https)),
        packages=packages, apt_proxy=inv.stage.apt_proxy, env_text=env_text, files=files,
        storage_yml=storage_yml, storage_note=storage.note, env_note=env_note,
        linked=linked_files,
        release=release or time.strftime("%Y%m%d%H%M%S", time.gmtime()),
        digests=digests, source=source,
        ruby=tuple(gems.ruby_requirement(source) or ()) or None, gemfile=gemfile,
        bundle_config=bundle_config, artifact=Artifact(inv) if app.artifact == "s3" else None,
        build=js_build.planned(source, app.build, f"stage {inv.stage_name} of {inv.path.name}"),
        notify_files=notify_files,
    )


def puma_notifies(f: Facts) -> bool:
    """Does the host's puma (Debian's package: installed, or the one its release ships)
    speak systemd's notify protocol (>= 6)?"""
    version = (f.raw.get("installed") or {}).get("puma")
    if isinstance(version, str) and version[:1].isdigit():
        return int(re.match(r"(\d+)", version.split(":")[-1]).group(1)) >= 6
    o = f.raw.get("os") or {}
    release = re.match(r"(\d+)", str(o.get("version") or ""))
    major = int(release.group(1)) if release else 0
    return (o.get("id") == "debian" and major >= 13) or (o.get("id") == "ubuntu" and major >= 24)


def settled_puma(d: Desired, hosts: list[Facts]) -> Desired:
    """gems: debian with puma: Type=notify when every host's puma speaks it."""
    if d.notify_files is None or not hosts or not all(puma_notifies(f) for f in hosts):
        return d
    return dataclasses.replace(d, files=d.notify_files, notify_files=None)


def settled(d: Desired, hosts: list[Facts]) -> Desired:
    """A host that joins the fleet (new, or behind) gets the release id the others serve for
    the same source: one id, one archive, across the hosts. Not when some host keeps that
    release beside another current one (a rollback's): then a new id, as always."""
    def serves(f: Facts) -> bool:
        meta = f.current_meta
        return meta.get("source") == d.digests.release and meta.get("state") == "good"

    ids = {f.current for f in hosts if f.current and serves(f)}
    if len(ids) != 1:
        return d
    (rid,) = ids
    if any(rid in f.releases and f.current != rid for f in hosts):
        return d
    return dataclasses.replace(d, release=rid)
