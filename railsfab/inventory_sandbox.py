"""hosts.yaml's `sandbox` section: local EC2-like hosts for a stage (fab sandbox.up),
absent on real stages."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import Field, model_validator

from railsfab.inventory_fleet import GroupName, TagKey, TagValue
from railsfab.inventory_shapes import Address, Model, Name, Package


class GemMirror(Model):
    packages: list[Package] = Field(min_length=1)  # ruby-* packages repacked as gems
    port: int = Field(9292, ge=1, le=65535)
    # a folder of .gem files served beside Debian's (gems Debian does not package)
    extra: str | None = None


class SandboxInstance(Model):
    """A sandbox host the stage does not list: booted, and recorded in the sandbox's AWS
    endpoint as an EC2 instance with these tags (in this Auto Scaling group), for hosts_from."""

    name: Name
    address: Address
    tags: dict[TagKey, TagValue] = Field(default_factory=dict)
    auto_scaling_group: GroupName | None = None


class Sandbox(Model):
    """Local EC2-like hosts for this stage (fab sandbox.up); absent on real stages."""

    bridge: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]{1,9}$")]
    subnet: str
    gateway: str
    proxy_port: int = Field(8888, ge=1, le=65535)
    aws_port: int = Field(5055, ge=1, le=65535)
    # The mail sink on the gateway (SMTP_ADDRESS/SMTP_PORT in the app's env): `fab sandbox.mail`
    smtp_port: int = Field(2525, ge=1, le=65535)
    # The Debian release of the stage's hosts: 12 "bookworm" (Rails 6.1) or 13 "trixie"
    # (Ruby 3.3, Rails 7.2); one cached base image each.
    debian: Literal[12, 13] = 12
    # A gem mirror on the gateway (rubygems.org is out of reach here), made of the gems these
    # Debian packages install; a stage uses it with app.gem_source_mirror.
    gem_mirror: GemMirror | None = None
    instances: list[SandboxInstance] = Field(default_factory=list)

    @model_validator(mode="after")
    def _gateway_in_subnet(self) -> Sandbox:
        net = ipaddress.ip_network(self.subnet, strict=True)
        if ipaddress.ip_address(self.gateway) not in net:
            raise ValueError(f"gateway {self.gateway} is not inside subnet {self.subnet}")
        return self
