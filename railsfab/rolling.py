"""The stage's ALB target group: a host as a target, health, deregister (drained) and
register (healthy), each waited for with boto3's waiters. railsfab.publish rolls through it."""

from __future__ import annotations

from functools import cached_property

from railsfab import remote
from railsfab.errors import RailsfabError
from railsfab.inventory import Host, Inventory


class TargetGroup:
    def __init__(self, inv: Inventory) -> None:
        from railsfab import aws, stack  # boto3: only for stages with a target group

        self.inv = inv
        self.c = aws.clients(inv)
        a = inv.stage.aws
        self.arn = a.target_group_arn or stack.outputs(inv).get("TargetGroupArn")
        self.delay = a.deregistration_delay
        self.poll = 1 if inv.stage.sandbox else 5

    @property
    def configured(self) -> bool:
        return bool(self.arn)

    def target(self, host: Host, conn=None, instance_id: str | None = None) -> dict:
        """The host as a target: instance id (hosts.yaml, the one the host's facts found,
        IMDSv2, EC2 lookup by IP) or IP."""
        ip = host.address
        if conn is not None and not _is_ip(ip):
            ip = remote.sh(conn, "hostname -I", step="target").stdout.split()[0]
        if self.inv.stage.aws.target_type == "ip":
            return {"Id": ip, "Port": 80}
        if host.instance_id or instance_id:
            return {"Id": host.instance_id or instance_id, "Port": 80}
        if conn is not None and not self.inv.stage.sandbox:
            # IMDSv2 (a sandbox host has no metadata service, and must not look for one).
            r = remote.sh(conn, "t=$(curl -s -m 2 -X PUT http://169.254.169.254/latest/api/token"
                          " -H 'X-aws-ec2-metadata-token-ttl-seconds: 60') && curl -s -m 2 "
                          "-H \"X-aws-ec2-metadata-token: $t\" "
                          "http://169.254.169.254/latest/meta-data/instance-id",
                          step="target", warn=True)
            if r.exited == 0 and r.stdout.startswith("i-"):
                return {"Id": r.stdout.strip(), "Port": 80}
        found = self._instances.get(ip) or self._instances_by_ip([ip]).get(ip)
        if not found:
            raise RailsfabError(f"no EC2 instance with private IP {ip}", host=host.name,
                                step="target", fix="set instance_id for this host in hosts.yaml")
        return {"Id": found, "Port": 80}

    @cached_property
    def _instances(self) -> dict[str, str]:
        """Instance ids of every host of the stage given by IP, in one EC2 call."""
        return self._instances_by_ip([h.address for h in self.inv.stage.hosts
                                      if _is_ip(h.address)])

    def _instances_by_ip(self, ips: list[str]) -> dict[str, str]:
        if not ips:
            return {}
        pages = self.c.ec2.get_paginator("describe_instances").paginate(Filters=[
            {"Name": "private-ip-address", "Values": ips}])
        return {i["PrivateIpAddress"]: i["InstanceId"] for page in pages
                for res in page["Reservations"] for i in res["Instances"]
                if i.get("State", {}).get("Name") != "terminated"}

    def health(self) -> dict[str, str]:
        return {t["Target"]["Id"]: t["TargetHealth"]["State"] for t in
                self.c.elbv2.describe_target_health(TargetGroupArn=self.arn)
                ["TargetHealthDescriptions"]}

    def _wait(self, waiter: str, targets: list[dict], limit: float) -> None:
        self.c.elbv2.get_waiter(waiter).wait(
            TargetGroupArn=self.arn, Targets=targets,
            WaiterConfig={"Delay": self.poll, "MaxAttempts": max(3, int(limit / self.poll) + 1)})

    def deregister(self, targets: list[dict]) -> None:
        self.c.elbv2.deregister_targets(TargetGroupArn=self.arn, Targets=targets)
        self._wait("target_deregistered", targets, self.delay + 30)

    def register(self, targets: list[dict]) -> None:
        self.c.elbv2.register_targets(TargetGroupArn=self.arn, Targets=targets)
        self._wait("target_in_service", targets, 300)


def _is_ip(address: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(address)
        return True
    except ValueError:
        return False
