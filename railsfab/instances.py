"""Which EC2 instance a host is: hosts.yaml's instance_id, the one cloud-init recorded on the
host (read with its facts), the host's own metadata service (IMDSv2), or EC2's lookup by
private IP. The target group, the security-group step of a
deploy and `fab check` all ask this one place."""

from __future__ import annotations

import ipaddress
from functools import cached_property

from railsfab import remote
from railsfab.inventory import Host, Inventory

IMDS_INSTANCE_ID = (
    "t=$(curl -s -m 2 -X PUT http://169.254.169.254/latest/api/token"
    " -H 'X-aws-ec2-metadata-token-ttl-seconds: 60') && curl -s -m 2 "
    "-H \"X-aws-ec2-metadata-token: $t\" "
    "http://169.254.169.254/latest/meta-data/instance-id")


class Instances:
    def __init__(self, inv: Inventory, clients) -> None:
        self.inv = inv
        self.c = clients

    def ip(self, host: Host, conn=None, step: str = "target") -> str:
        """The host's private IP: its address, or (a name) what the host says it has."""
        if conn is not None and not is_ip(host.address):
            return remote.sh(conn, "hostname -I", step=step).stdout.split()[0]
        return host.address

    def id(self, host: Host, conn=None, step: str = "target",
           recorded: str | None = None) -> str | None:
        """The host's instance id, or None when no instance can be found for it. `recorded`:
        the id its facts read (Facts.instance_id), which saves asking IMDS or EC2."""
        if host.instance_id or recorded:
            return host.instance_id or recorded
        if conn is not None and not self.inv.stage.sandbox:
            # A sandbox host has no metadata service, and must not look for one.
            r = remote.sh(conn, IMDS_INSTANCE_ID, step=step, warn=True)
            if r.exited == 0 and r.stdout.startswith("i-"):
                return r.stdout.strip()
        ip = self.ip(host, conn, step)
        return self._by_ip.get(ip) or self.by_ip([ip]).get(ip)

    @cached_property
    def _by_ip(self) -> dict[str, str]:
        """Instance ids of every host of the stage given by IP, in one EC2 call."""
        return self.by_ip([h.address for h in self.inv.stage.hosts if is_ip(h.address)])

    def by_ip(self, ips: list[str]) -> dict[str, str]:
        if not ips:
            return {}
        pages = self.c.ec2.get_paginator("describe_instances").paginate(Filters=[
            {"Name": "private-ip-address", "Values": ips}])
        return {i["PrivateIpAddress"]: i["InstanceId"] for page in pages
                for res in page["Reservations"] for i in res["Instances"]
                if i.get("State", {}).get("Name") != "terminated"}


def is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
        return True
    except ValueError:
        return False
