"""What a deploy wants every web host to look like, computed once on the controller before
the first SSH connection: rendered files, the env file, the release and its digests."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from dataclasses import dataclass, field

from railsfab import appserver, gems, render
from railsfab.appserver import AppServer
from railsfab.artifact import Artifact
from railsfab.errors import ConfigError
from railsfab.facts import Facts
from railsfab.inventory import App, Inventory, Stage
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
    release: str  # the id a new release gets
    digests: Digests
    ruby: tuple[str, ...] | None = None  # the Gemfile's ruby requirement
    gemfile: str = ""  # Gemfile.railsfab: the app's Gemfile without app.bundle_without
    bundle_config: str = ""  # app.gems: bundler: Bundler's config (deployment mode)
    source: Source | None = field(default=None, repr=False, compare=False)
    # app.artifact: s3: the archive goes through the stage's bucket (railsfab.artifact)
    artifact: Artifact | None = field(default=None, repr=False, compare=False)

    def meta(self, state: str) -> dict:
        """The release's ledger entry (.railsfab-release.json)."""
        return {"source": self.digests.release, "gems": self.digests.gems,
                "assets": self.digests.assets, "migrations": self.digests.migrations,
                "state": state, "app_server": self.app.app_server,
                "rails_env": self.app.rails_env}

    def release_archive(self) -> bytes:
        """The app's files plus what railsfab puts into a release: Gemfile.railsfab,
        config/storage.yml (when rendered) and the ledger entry, state `prepared`."""
        extra = {META: json.dumps({"id": self.release, **self.meta("prepared")})}
        if self.gemfile:
            extra[GEMFILE] = self.gemfile
        if self.storage_yml:
            extra["config/storage.yml"] = self.storage_yml
        return self.source.archive(extra)


def s3_service(storage_yml: str | None) -> str | None:
    """The name of the first S3 service in an app's config/storage.yml (ERB and all)."""
    name = None
    for line in (storage_yml or "").splitlines():
        top = re.match(r"^([A-Za-z_][\w-]*):\s*(#.*)?$", line)
        if top:
            name = top.group(1)
        elif name and re.match(r"""^\s+service:\s*["']?S3["']?\s*(#.*)?$""", line):
            return name
    return None


def app_env(inv: Inventory, secrets: dict[str, str], service: str = "amazon") -> dict[str, str]:
    """The app's environment: RAILS_ENV explicit, the database, S3, then the secrets."""
    app, a = inv.stage.app, inv.stage.aws
    env = {"RAILS_ENV": app.rails_env, "RACK_ENV": app.rails_env}
    if app.database:
        db = app.database
        env.update(DATABASE_HOST=db.host, DATABASE_PORT=str(db.port),
                   DATABASE_NAME=db.name, DATABASE_USERNAME=db.user)
    if a.bucket:
        # ActiveStorage on S3. On EC2 the SDK takes credentials from the instance role:
        # no keys on disk. The sandbox's endpoint takes dummy keys, via this 0600 file.
        env.update(ACTIVE_STORAGE_SERVICE=service, S3_BUCKET=a.bucket, AWS_REGION=a.region)
        if a.endpoint_url:
            env["AWS_ENDPOINT_URL"] = a.endpoint_url
        if inv.stage.sandbox:
            env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    env.update(secrets)
    return env


def _storage(inv: Inventory, templates, source: Source) -> tuple[str | None, str | None, str]:
    """The app's own config/storage.yml wins when it has an S3 service: railsfab supplies only
    the env (bucket, region, endpoint). Else railsfab renders one into the release, and says
    so. Returns (rendered text or None, what to say, the ActiveStorage service to use)."""
    a = inv.stage.aws
    if not a.bucket:
        return None, None, "amazon"
    envs = "S3_BUCKET, AWS_REGION" + (", AWS_ENDPOINT_URL" if a.endpoint_url else "")
    own = s3_service(source.text("config/storage.yml"))
    if own:
        return None, (f"the app's own config/storage.yml is kept (S3 service {own!r}); "
                      f"railsfab supplies {envs} and ACTIVE_STORAGE_SERVICE={own} in the env "
                      "file"), own
    text = render.render(templates, "storage.yml.j2", app=inv.stage.app, aws=a,
                         stage=inv.stage_name)
    return text, (f"config/storage.yml rendered by railsfab into each release (S3 service "
                  f"'amazon', bucket {a.bucket}): the app has none with an S3 service"), "amazon"


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
    config = gems.bundle_config(path=paths.bundle, without=app.bundle_without,
                                mirror=app.gem_source_mirror)
    return "", config, tuple(gems.build_packages(lock))


def build(inv: Inventory, *, release: str | None = None) -> Desired:
    """Everything local is read and checked here, before any SSH connection."""
    app = inv.stage.app
    paths = Paths.of(app)
    server = appserver.for_app(app, paths, https=inv.stage.https)
    source = Source(inv.resolve(app.source), ref=app.ref)
    templates = render.environment(inv.root)
    storage_yml, storage_note, service = _storage(inv, templates, source)
    secrets_file = inv.resolve(app.secrets_file) if app.secrets_file else None
    env_text = env_file_text(app_env(inv, app_secrets(secrets_file), service))
    files = server.files(templates, notify=server.notify(source.root))
    front = ("nginx",) if app.nginx else ()
    gemfile, bundle_config, build = _gems(inv, templates, paths, source)
    packages = tuple(dict.fromkeys(front + BASE_PACKAGES + tuple(app.packages) + build))
    digests = Digests(release=sha(source.digest + (storage_yml or "") + gemfile),
                      gems=sha(source.gems_digest + gemfile + bundle_config),
                      assets=source.assets_digest, migrations=source.migrations_digest)
    return Desired(
        app=app, paths=paths, server=server, https=inv.stage.https,
        retired=tuple(appserver.others(app, paths, https=inv.stage.https)),
        packages=packages, apt_proxy=inv.stage.apt_proxy, env_text=env_text, files=files,
        storage_yml=storage_yml, storage_note=storage_note,
        release=release or time.strftime("%Y%m%d%H%M%S", time.gmtime()),
        digests=digests, source=source,
        ruby=tuple(gems.ruby_requirement(source) or ()) or None, gemfile=gemfile,
        bundle_config=bundle_config, artifact=Artifact(inv) if app.artifact == "s3" else None,
    )


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
