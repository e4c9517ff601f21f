"""hosts.yaml's smaller sections (ssh, a host, the database) and which folders the app may
own. railsfab.inventory re-exports them."""

from __future__ import annotations

import posixpath
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from railsfab.commands import SECRET_NAME
from railsfab.inventory_shapes import (
    SYSTEM_DIRS,
    TOP_LEVEL_ONLY,
    Address,
    DbIdent,
    EnvName,
    InstanceId,
    Name,
    User,
)
from railsfab.inventory_shapes import (
    Model as _Model,
)


class SSH(_Model):
    """How to reach a host. Stage-wide defaults; a host may override user, port and key."""

    user: User = "admin"
    port: int = Field(22, ge=1, le=65535)
    key: str | None = None
    known_hosts: str = ".railsfab/known_hosts"
    connect_timeout: float = Field(10, gt=0)


class Host(_Model):
    name: Name
    address: Address
    roles: list[Literal["web", "db", "migrate"]] = Field(default_factory=lambda: ["web"])
    user: User | None = None
    port: int | None = Field(None, ge=1, le=65535)
    key: str | None = None
    instance_id: InstanceId | None = None


DEFAULT_DB_PORTS = {"mysql2": 3306, "postgresql": 5432}


class Database(_Model):
    adapter: Literal["mysql2", "postgresql"] = "mysql2"
    host: Address
    port: int = Field(3306, ge=1, le=65535)  # default: the adapter's (3306, 5432)
    name: DbIdent
    user: DbIdent

    @model_validator(mode="before")
    @classmethod
    def _adapter_port(cls, data: Any) -> Any:
        if isinstance(data, dict) and "port" not in data:
            data = {**data, "port": DEFAULT_DB_PORTS.get(data.get("adapter", "mysql2"), 3306)}
        return data

    @property
    def title(self) -> str:
        return {"mysql2": "MySQL", "postgresql": "PostgreSQL"}[self.adapter]


def own_folder(v: str) -> str:
    """A folder railsfab may make the app's: written plainly, not a system directory."""
    normal = posixpath.normpath(v)
    if normal != v.rstrip("/") or ".." in v.split("/"):
        raise ValueError(f"must be written plainly (no '..', '.', '//'): {normal}?")
    if normal in TOP_LEVEL_ONLY or any(normal == d or normal.startswith(d + "/")
                                       for d in SYSTEM_DIRS):
        raise ValueError(f"{normal} is a system directory, or inside one: the app user "
                         "would own it; use a folder of its own, e.g. /srv/myapp")
    return normal


def plain_env(v: Any) -> Any:
    """app.env's values as the env file writes them: YAML's numbers and booleans as text."""
    if not isinstance(v, dict):
        return v
    secret = [k for k in v if isinstance(k, str) and SECRET_NAME.search(k)]
    if secret:
        raise ValueError(f"{', '.join(secret)} looks secret, and hosts.yaml is committed: put "
                         "it in the secrets file (app.secrets_file) instead")
    return {k: (str(x).lower() if isinstance(x, bool) else str(x))
            if isinstance(x, (bool, int, float)) else x for k, x in v.items()}


ReleaseFile = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9._/-]*$")]


class LinkedFile(_Model):
    """A file kept in shared/<path> and linked into every release at <path>. Uploaded from
    a local file (`from`) or a key of the secrets file (`secret`), or put there by you."""

    path: ReleaseFile
    from_: str | None = Field(None, alias="from")
    secret: EnvName | None = None

    @model_validator(mode="before")
    @classmethod
    def _plain(cls, data: Any) -> Any:
        return {"path": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_source(self) -> LinkedFile:
        if posixpath.normpath(self.path) != self.path or ".." in self.path.split("/"):
            raise ValueError(f"{self.path}: a path inside the release, written plainly "
                             "(e.g. config/database.yml)")
        if self.from_ and self.secret:
            raise ValueError(f"{self.path}: give `from` (a local file) or `secret` (a key of "
                             "the secrets file), not both")
        if not self.path.startswith("config/") or self.path.endswith(".rb"):
            raise ValueError(f"{self.path}: a linked file is a setting the app reads under "
                             "config/ (e.g. config/database.yml, config/master.key), kept in "
                             "shared/config, which only root writes; not code")
        return self


class Rollout(_Model):
    """How a release goes out behind a target group (railsfab.rollout). One canary goes
    first (drained for its activation and gate) and bakes under real traffic, then the
    hosts whose plan is a zero-downtime handover, at once (or in waves), in service. Hosts
    whose plan disrupts (a full restart, a server switch, nginx's site) leave the target
    group, in batches of aws.batch_size."""

    canary: bool = True  # one host first, judged by its traffic before the rest follow
    wave: int | None = Field(None, ge=1)  # hosts at once after the canary (default: all)
    bake: float = Field(10, ge=0, le=3600)  # seconds the canary serves before it is judged
    # the bake ends early once the canary has answered this many requests since its switch
    bake_requests: int = Field(500, ge=1)
    # the canary's share of 5xx answers over the bake that stops the rollout (when it is
    # also above the other hosts' share over the same window)
    max_5xx: float = Field(0.01, ge=0, le=1)
    # the canary's p95 upstream time above this multiple of the others' stops it
    latency_factor: float = Field(3.0, ge=1)
