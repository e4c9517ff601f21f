"""The stage's ALB target group: a host as a target, health, deregister (drained) and
register (healthy), each waited for with boto3's waiters. railsfab.publish rolls through it."""

from __future__ import annotations

from railsfab.errors import RailsfabError
from railsfab.instances import Instances
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
        self.instances = Instances(inv, self.c)

    @property
    def configured(self) -> bool:
        return bool(self.arn)

    def target(self, host: Host, conn=None, instance_id: str | None = None) -> dict:
        """The host as a target: instance id (hosts.yaml, the one the host's facts found,
        IMDSv2, EC2 lookup by IP) or IP."""
        if self.inv.stage.aws.target_type == "ip":
            return {"Id": self.instances.ip(host, conn), "Port": 80}
        found = self.instances.id(host, conn, recorded=instance_id)
        if not found:
            raise RailsfabError(f"no EC2 instance with private IP {self.instances.ip(host, conn)}",
                                host=host.name, step="target",
                                fix="set instance_id for this host in hosts.yaml")
        return {"Id": found, "Port": 80}

    def health(self) -> dict[str, str]:
        return {i: h["state"] for i, h in self.health_detail().items()}

    def health_detail(self, targets: list[dict] | None = None) -> dict[str, dict]:
        """Each target's state with AWS's reason code and description (why it is unhealthy,
        unused, draining...). `targets`: ask about these, registered or not (an unregistered
        one comes back "unused", Target.NotRegistered); default: the registered ones."""
        kw = {"Targets": targets} if targets else {}
        return {t["Target"]["Id"]: {"state": t["TargetHealth"]["State"],
                                    "reason": t["TargetHealth"].get("Reason") or "",
                                    "description": t["TargetHealth"].get("Description") or ""}
                for t in self.c.elbv2.describe_target_health(TargetGroupArn=self.arn, **kw)
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

