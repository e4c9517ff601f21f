"""Load and validate hosts.yaml: stages -> hosts, ssh, app, aws, sandbox settings.

Everything is checked before any SSH. Each problem becomes one line naming the file, the
path to the bad key and what was expected, with a "did you mean" for unknown keys, and
exit status 2 (ConfigError).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from railsfab.errors import ConfigError
from railsfab.inventory_errors import describe, read_yaml, suggest
from railsfab.inventory_fleet import HostsFrom, check_stage
from railsfab.inventory_parts import (
    SSH,
    Database,
    Host,
    LinkedFile,
    Rollout,
    own_folder,
    plain_env,
)
from railsfab.inventory_sandbox import Sandbox
from railsfab.inventory_shapes import (
    BUCKET_NAME,
    Arn,
    Bucket,
    Domain,
    EnvName,
    EnvValue,
    GitRef,
    HostPath,
    Name,
    Package,
    RailsEnv,
    Region,
    Size,
    StackName,
    Url,
    User,
    Word,
)
from railsfab.inventory_shapes import (
    Model as _Model,
)

DEFAULT_FILE = "hosts.yaml"
STAGE_ENV = "RAILSFAB_STAGE"
FILE_ENV = "RAILSFAB_HOSTS"

KNOWN_ROLES = ("web", "db", "migrate")


class App(_Model):
    name: Name
    source: str
    # In a git checkout: the commit, branch or tag whose tracked files ship (default HEAD).
    ref: GitRef | None = None
    deploy_to: HostPath
    rails_env: RailsEnv = "production"
    deploy_user: User = "deploy"
    # The user the app server runs as (default: the app's name): no shell, no sudo; it reads
    # the releases (the deploy user's) and writes only shared/log, shared/tmp, shared/storage
    # and the folders listed in `writable`.
    app_user: User | None = None
    writable: list[HostPath] = Field(default_factory=list)
    app_server: Literal["unicorn", "puma"] = "unicorn"
    workers: int = Field(2, ge=1, le=64)
    threads: int = Field(5, ge=1, le=64)  # per Puma worker (unicorn workers are single-threaded)
    # Nginx in front (the default). `nginx: false` is the seed's first step: Puma alone,
    # listening on `port` of every interface, serving its own static files.
    nginx: bool = True
    port: int = Field(3000, ge=1, le=65535)
    boot_timeout: int = Field(60, ge=5, le=1800)  # longest the app may take to boot
    timeout: int = Field(30, ge=5, le=600)
    keep_releases: int = Field(5, ge=1, le=100)
    client_max_body_size: Size = "25m"
    # The route that answers 200 when the app is up: verify, the local gate before a host
    # rejoins the ALB, `fab check` and the target group's health check all ask it.
    health_path: Annotated[str, Field(pattern=r"^/[A-Za-z0-9._~/-]*$")] = "/up"
    # The app redirects plain HTTP to https (Rails' config.force_ssl): railsfab's own
    # requests then say they came through TLS (X-Forwarded-Proto: https), as the ALB's do.
    force_ssl: bool = False
    packages: list[Package] = Field(default_factory=list)
    # Where gems come from: Debian's ruby-* packages (`bundle install --local` against what
    # app.packages installed), or Bundler in deployment mode from the app's own Gemfile.lock
    # (rubygems.org, or gem_source_mirror), installed into shared/bundle.
    gems: Literal["debian", "bundler"] = "debian"
    gem_source_mirror: Url | None = None
    # Gemfile groups not installed on the hosts (their gems are for development and tests).
    bundle_without: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]*(:[a-z_][a-z0-9_]*)*$")] = \
        "development:test"
    secrets_file: str | None = None
    # Plain settings (not secret: hosts.yaml is committed) for the app's env file.
    env: dict[EnvName, EnvValue] = Field(default_factory=dict)
    # Files kept in shared/ and linked into every release (Capistrano's linked_files):
    # `config/database.yml` (put there by you), or {path, from: a local file} or
    # {path, secret: a key of the secrets file} (uploaded by the deploy).
    linked_files: list[LinkedFile] = Field(default_factory=list)
    database: Database | None = None
    # How the release reaches the hosts: uploaded to each over SSH, or built once, put in the
    # stage's bucket (releases/<sha256>) and fetched by each host with a presigned URL.
    artifact: Literal["upload", "s3"] = "upload"
    # The JavaScript/CSS build (package.json's build and build:css scripts, as jsbundling-rails
    # and cssbundling-rails set them up): run on this machine once per release (auto), or not.
    build: Literal["auto", "none"] = "auto"

    @field_validator("deploy_to")
    @classmethod
    def _app_folder(cls, v: str) -> str:
        return own_folder(v)

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, v: Any) -> Any:
        return plain_env(v)

    @field_validator("writable")
    @classmethod
    def _writable(cls, v: list[str]) -> list[str]:
        return [own_folder(path) for path in v]

    @model_validator(mode="before")
    @classmethod
    def _default_app_user(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("app_user") is None and "name" in data:
            data = {**data, "app_user": data["name"]}  # a Name is a valid user name
        return data

    @field_validator("deploy_user")
    @classmethod
    def _not_root(cls, v: str) -> str:
        if v == "root":
            raise ValueError("may not be root: it owns the releases and runs Rails commands "
                             "(e.g. deploy)")
        return v

    @model_validator(mode="after")
    def _app_user(self) -> App:
        if self.app_user in ("root", self.deploy_user):
            raise ValueError(f"app.app_user may not be {self.app_user}: the app runs as a user "
                             "of its own, which may write only shared/log, shared/tmp and "
                             f"shared/storage (e.g. app_user: {self.name}-app)")
        shared = f"{self.deploy_to}/shared/"
        inside = [w for w in self.writable
                  if w == self.deploy_to or w.startswith(self.deploy_to + "/")
                  and (not w.startswith(shared) or w.startswith((f"{shared}config",
                                                                  f"{shared}bundle")))]
        if inside:
            raise ValueError(f"app.writable: {', '.join(inside)} is inside deploy_to but not in "
                             "shared/ (or is shared/config or shared/bundle): the releases and "
                             "the app's settings stay the deploy user's")
        return self

    @property
    def run_user(self) -> str:
        """The app's own user (app.app_user, default the app's name)."""
        return self.app_user or self.name

    @property
    def app_writable(self) -> list[str]:
        """Every folder the app may write (its unit's ReadWritePaths)."""
        shared = f"{self.deploy_to}/shared"
        return [f"{shared}/log", f"{shared}/tmp", f"{shared}/storage", *self.writable]

    @property
    def http_port(self) -> int:
        """Where requests to a web host go: nginx's :80, or the app server's own port."""
        return 80 if self.nginx else self.port

    @model_validator(mode="after")
    def _server_shape(self) -> App:
        from railsfab.appserver import SERVERS  # the servers know what they can do

        if not self.nginx and not SERVERS[self.app_server].faces_clients:
            able = ", ".join(n for n, s in SERVERS.items() if s.faces_clients)
            raise ValueError(
                f"nginx: false needs app_server: {able} ({self.app_server} is built to sit "
                "behind nginx: slow clients would tie up its single-threaded workers)"
            )
        return self


class AWS(_Model):
    region: Region = "us-east-1"
    endpoint_url: Url | None = None
    # `fab aws.provision` manages this CloudFormation stack; deploy reads its outputs.
    stack_name: StackName | None = None
    bucket: Bucket | None = None
    target_group_arn: Arn | None = None  # else the stack's TargetGroupArn output
    target_type: Literal["instance", "ip"] = "instance"
    vpc_id: str | None = None  # on a sandbox stage, taken from the sandbox's AWS endpoint
    subnet_ids: list[str] = Field(default_factory=list)
    route_table_ids: list[str] = Field(default_factory=list)
    admin_cidr: str | None = None  # who may SSH to the app hosts (port 22)
    # 0.0.0.0/0 as admin_cidr opens SSH to the internet: only when the stage says so.
    allow_ssh_from_anywhere: bool = False
    deregistration_delay: int = Field(30, ge=0, le=3600)
    batch_size: int = Field(1, ge=1)
    vpc_endpoint_only: bool = False  # bucket policy: deny object access not via the endpoint
    # Buckets besides the stage's own that the hosts reach through the S3 gateway endpoint
    # (its policy allows only the listed ones).
    endpoint_buckets: list[str] = Field(default_factory=list)
    # HTTPS at the ALB: an ACM certificate by ARN, or the issued one for this domain name.
    # Adds an HTTPS:443 listener; :80 then redirects to it.
    certificate_arn: Arn | None = None
    certificate_domain: Domain | None = None
    ssl_policy: Word = "ELBSecurityPolicy-TLS13-1-2-2021-06"
    # moto (the sandbox's AWS) evaluates no policy conditions: every conditional Deny
    # denies all object access there. Sandbox stages render the policy but may skip it.
    apply_bucket_policy: bool = True

    @field_validator("admin_cidr")
    @classmethod
    def _cidr(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            return str(ipaddress.IPv4Network(v, strict=True))
        except ValueError as exc:
            raise ValueError(f"{v!r} is not an IPv4 CIDR like 203.0.113.0/24 ({exc})") from None

    @field_validator("endpoint_buckets")
    @classmethod
    def _bucket_names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not BUCKET_NAME.match(name):
                raise ValueError(f"{name!r} is not an S3 bucket name (3 to 63 lowercase "
                                 "letters, digits, '.' and '-')")
        return v

    @model_validator(mode="after")
    def _ssh_not_open(self) -> AWS:
        broad = self.admin_cidr and ipaddress.IPv4Network(self.admin_cidr).prefixlen < 8
        if broad and not self.allow_ssh_from_anywhere:
            raise ValueError(f"admin_cidr {self.admin_cidr} opens SSH (port 22) to "
                             + ("the whole internet" if self.admin_cidr == "0.0.0.0/0" else
                                "a large part of the internet (shorter than /8)")
                             + ": give your own network's CIDR, or set "
                             "allow_ssh_from_anywhere: true to mean it")
        return self


class Stage(_Model):
    hosts: list[Host] = Field(default_factory=list)
    hosts_from: HostsFrom | None = None  # the web hosts, read from AWS (railsfab.fleet)
    ssh: SSH = Field(default_factory=SSH)
    app: App
    aws: AWS = Field(default_factory=AWS)
    rollout: Rollout = Field(default_factory=Rollout)
    apt_proxy: Url | None = None
    sandbox: Sandbox | None = None

    @property
    def https(self) -> bool:
        """Do clients reach the app over TLS (ended at the ALB, or the app insists)?"""
        return bool(self.aws.certificate_arn or self.aws.certificate_domain
                    or self.app.force_ssl)

    @model_validator(mode="after")
    def _consistent(self) -> Stage:
        check_stage(self)
        ssh_users = {self.ssh.user} | {h.user for h in self.hosts if h.user}
        if self.app.deploy_user in ssh_users:
            raise ValueError(f"app.deploy_user {self.app.deploy_user!r} is the SSH user: the app "
                             "would run with the admin's sudo rights; use a user of its own "
                             "(e.g. deploy)")
        if self.app.run_user in ssh_users:
            raise ValueError(f"app.app_user {self.app.run_user!r} is the SSH user: the app would "
                             "run with the admin's sudo rights; use a user of its own")
        names = [h.name for h in self.hosts]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"host names must be unique; repeated: {', '.join(dupes)}")
        migrators = [h.name for h in self.hosts if "migrate" in h.roles]
        if len(migrators) > 1:
            raise ValueError(
                f"exactly one host may have role 'migrate', found {', '.join(migrators)}"
            )
        if self.sandbox:
            net = ipaddress.ip_network(self.sandbox.subnet)
            for h in [*self.hosts, *self.sandbox.instances]:
                try:
                    inside = ipaddress.ip_address(h.address) in net
                except ValueError:
                    inside = False
                if not inside:
                    raise ValueError(
                        f"sandbox host {h.name} address {h.address} must be an IP inside "
                        f"{self.sandbox.subnet}"
                    )
        return self


class HostsFile(_Model):
    default_stage: str
    stages: dict[Name, Stage] = Field(min_length=1)

    @model_validator(mode="after")
    def _default_exists(self) -> HostsFile:
        if self.default_stage not in self.stages:
            raise ValueError(
                f"default_stage '{self.default_stage}' is not one of the stages: "
                f"{', '.join(self.stages)}"
            )
        return self


class Inventory:
    """One stage of a loaded hosts.yaml, with paths resolved against the file's folder."""

    def __init__(self, path: Path, stage_name: str, stage: Stage) -> None:
        self.path = path
        self.root = path.parent
        self.stage_name = stage_name
        self.stage = stage

    def resolve(self, p: str) -> Path:
        """A path from hosts.yaml: ~ expanded, relative ones taken from the file's folder."""
        q = Path(os.path.expanduser(p))
        return q if q.is_absolute() else (self.root / q)

    @property
    def state_dir(self) -> Path:
        """Local working state (sandbox roots, keys, pid files); git-ignored."""
        return self.root / ".railsfab"

    @property
    def known_hosts(self) -> Path:
        return self.resolve(self.stage.ssh.known_hosts)

    def hosts(self, role: str | None = None, only: str | None = None) -> list[Host]:
        hosts = [h for h in self.stage.hosts if role is None or role in h.roles]
        if only:
            wanted = [n.strip() for n in only.split(",") if n.strip()]
            unknown = [n for n in wanted if n not in {h.name for h in self.stage.hosts}]
            if unknown:
                names = [h.name for h in self.stage.hosts]
                raise ConfigError(
                    f"{self.path.name}: stage {self.stage_name} has no host "
                    f"{', '.join(unknown)}{suggest(unknown[0], names)}",
                    fix=f"hosts are: {', '.join(names)}",
                )
            hosts = [h for h in hosts if h.name in wanted]
        return hosts

    def ssh_user(self, host: Host) -> str:
        return host.user or self.stage.ssh.user

    def ssh_port(self, host: Host) -> int:
        return host.port or self.stage.ssh.port

    def ssh_key(self, host: Host) -> Path | None:
        key = host.key or self.stage.ssh.key
        return self.resolve(key) if key else None


# --- loading ---------------------------------------------------------------------------


def load(path: str | os.PathLike | None = None, stage: str | None = None) -> Inventory:
    """Read hosts.yaml and pick the stage (argument, then $RAILSFAB_STAGE, then the default)."""
    p = Path(path or os.environ.get(FILE_ENV) or DEFAULT_FILE)
    data = read_yaml(p)
    try:
        parsed = HostsFile.model_validate(data)
    except ValidationError as exc:
        # An unknown key is usually a typo of a known one: report it first, with "did you mean".
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        raise ConfigError(describe(p, errors[0], data, HostsFile)) from None
    chosen = stage or os.environ.get(STAGE_ENV) or parsed.default_stage
    if chosen not in parsed.stages:
        names = list(parsed.stages)
        raise ConfigError(
            f"{p}: no stage '{chosen}'{suggest(chosen, names)}; stages are: {', '.join(names)}"
        )
    return Inventory(p.resolve(), chosen, parsed.stages[chosen])
