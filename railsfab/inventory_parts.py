"""hosts.yaml's smaller sections (ssh, a host, the database) and which folders the app may
own. railsfab.inventory re-exports them."""

from __future__ import annotations

import posixpath
from typing import Any, Literal

from pydantic import Field, model_validator

from railsfab.inventory_shapes import (
    SYSTEM_DIRS,
    TOP_LEVEL_ONLY,
    Address,
    DbIdent,
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
