"""The stage's ALB target group: a host as a target, health, deregister (drained) and
register (healthy), each waited for with boto3's waiters. railsfab.publish rolls through it."""

from __future__ import annotations

from railsfab.errors import RailsfabError
from railsfab.instances import Instances
from railsfab.inventory import Host, Inventory

# How long a registered target may take to pass the ALB's health checks.
REGISTER_LIMIT = 300


class TargetGroup:
    """The stage's target group: aws.target_group_arn, else the stack's TargetGroupArn
    output (required: a stack without it raises, naming the fix). `out`: the stack's
    outputs, when the caller read them already."""

    def __init__(self, inv: Inventory, out: dict[str, str] | None = None) -> None:
        from railsfab import aws, outputs  # boto3: only for stages with a target group

        self.inv = inv
        self.c = aws.clients(inv)
        a = inv.stage.aws
        self.arn = a.target_group_arn or (
            out or outputs.required(inv, ("TargetGroupArn",)))["TargetGroupArn"]
        self.delay = a.deregistration_delay
        self.poll = 1 if inv.stage.sandbox else 5
        self.instances = Instances(inv, self.c)

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

    def ensure_health_path(self, rep) -> None:
        """deploy: the ALB asks app.health_path. The stack's target group is set to it (a
        change, reported); one hosts.yaml names by aws.target_group_arn is only compared."""
        path = self.inv.stage.app.health_path
        with rep.step("aws", "health check") as s:
            if self.inv.stage.aws.target_group_arn:
                have = health_check_path(self.c.elbv2, self.arn)
                if have == path:
                    return s.ok(f"the target group asks {path}")
                return s.ok(f"the target group asks {have}, app.health_path is {path}: set it "
                            f"with `aws elbv2 modify-target-group --target-group-arn "
                            f"{self.arn} --health-check-path {path}`")
            before = ensure_health_check_path(self.c.elbv2, self.arn, path)
            s.set(before is not None, f"the target group asks {path}"
                  + (f" (was {before})" if before else ""))

    def register(self, targets: list[dict]) -> None:
        """Registered and healthy, or a RailsfabError saying what the target group answered
        (a refusal, or the state and reason of a target that did not become healthy)."""
        from botocore.exceptions import BotoCoreError, ClientError, WaiterError

        ids = ", ".join(t["Id"] for t in targets)
        try:
            self.c.elbv2.register_targets(TargetGroupArn=self.arn, Targets=targets)
        except (BotoCoreError, ClientError) as exc:
            raise RailsfabError(f"the target group refused {ids}: {exc}", step="register",
                                fix="see what AWS said above (the instance's state, the "
                                    "credentials' elasticloadbalancing permissions)") from None
        try:
            self._wait("target_in_service", targets, REGISTER_LIMIT)
        except WaiterError:
            said = "; ".join(f"{t}: {h['state']} {h['reason']} {h['description']}".strip()
                             for t, h in self.health_detail(targets).items())
            raise RailsfabError(
                f"not healthy in the target group after {REGISTER_LIMIT} s: {said}",
                step="register", fix=f"the ALB asks {self.inv.stage.app.health_path} on port "
                f"80: the app's security group must let the ALB in") from None


def health_check_path(elbv2, arn: str) -> str:
    return elbv2.describe_target_groups(TargetGroupArns=[arn])["TargetGroups"][0][
        "HealthCheckPath"]


def ensure_health_check_path(elbv2, arn: str, path: str) -> str | None:
    """The target group's health check asks `path`: the path it asked before when it had
    to change, else None."""
    before = health_check_path(elbv2, arn)
    if before == path:
        return None
    elbv2.modify_target_group(TargetGroupArn=arn, HealthCheckPath=path)
    return before
