"""Health-gated rolling through the ALB target group, batch by batch.

Per batch: deregister -> wait until drained (bounded by the deregistration delay) -> the
work (deploy activation, restart) -> local health gate through nginx (/up 200) ->
register -> wait until healthy -> next batch. The last healthy target is never
deregistered. A failing batch stops the roll: that host stays deregistered, every other
one stays registered and healthy, and the error says so.
"""

from __future__ import annotations

from collections.abc import Callable

from railsfab import aws, remote, stack
from railsfab.errors import RailsfabError
from railsfab.inventory import Host, Inventory
from railsfab.report import Reporter


class TargetGroup:
    def __init__(self, inv: Inventory) -> None:
        self.inv = inv
        self.c = aws.clients(inv)
        a = inv.stage.aws
        self.arn = a.target_group_arn or stack.outputs(inv).get("TargetGroupArn")
        self.delay = a.deregistration_delay
        self.poll = 1 if inv.stage.sandbox else 5

    @property
    def configured(self) -> bool:
        return bool(self.arn)

    def target(self, host: Host, conn=None) -> dict:
        """The host as a target: instance id (hosts.yaml, IMDSv2, EC2 lookup by IP) or IP."""
        ip = host.address
        if conn is not None and not _is_ip(ip):
            ip = remote.sh(conn, "hostname -I", step="target").stdout.split()[0]
        if self.inv.stage.aws.target_type == "ip":
            return {"Id": ip, "Port": 80}
        if host.instance_id:
            return {"Id": host.instance_id, "Port": 80}
        if conn is not None and not self.inv.stage.sandbox:
            # IMDSv2 (a sandbox host has no metadata service, and must not look for one).
            r = remote.sh(conn, "t=$(curl -s -m 2 -X PUT http://169.254.169.254/latest/api/token"
                          " -H 'X-aws-ec2-metadata-token-ttl-seconds: 60') && curl -s -m 2 "
                          "-H \"X-aws-ec2-metadata-token: $t\" "
                          "http://169.254.169.254/latest/meta-data/instance-id",
                          step="target", warn=True)
            if r.exited == 0 and r.stdout.startswith("i-"):
                return {"Id": r.stdout.strip(), "Port": 80}
        found = [i for res in self.c.ec2.describe_instances(Filters=[
            {"Name": "private-ip-address", "Values": [ip]}])["Reservations"]
            for i in res["Instances"]]
        if not found:
            raise RailsfabError(f"no EC2 instance with private IP {ip}", host=host.name,
                                step="target", fix="set instance_id for this host in hosts.yaml")
        return {"Id": found[0]["InstanceId"], "Port": 80}

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


def roll(tg: TargetGroup, rep: Reporter, hosts: list[Host], targets: dict[str, dict],
         work: Callable[[list[Host]], None], needs_work: set[str] | None = None,
         recover: Callable[[list[Host]], None] | None = None) -> None:
    """Run `work` on batches of hosts, each batch out of the target group meanwhile.

    Hosts not in `needs_work` (nothing to restart or reload) stay in service; they are
    only registered if they are not yet. When `work` fails on a batch, the roll stops
    there; `recover` (if given) puts the batch back as it was and raises if it cannot, and
    only a recovered batch rejoins the target group.
    """
    idle = [h for h in hosts if needs_work is not None and h.name not in needs_work]
    hosts = [h for h in hosts if h not in idle]
    if idle:
        health = tg.health()
        work(idle)
        for h in idle:
            with rep.step(h.name, "target") as s:
                t = targets[h.name]
                if health.get(t["Id"]) == "healthy":
                    s.ok(f"{t['Id']} healthy in the target group")
                else:
                    tg.register([t])
                    s.change(f"{t['Id']} registered, healthy")
    size = tg.inv.stage.aws.batch_size
    for i in range(0, len(hosts), size):
        batch = hosts[i:i + size]
        batch_targets = [targets[h.name] for h in batch]
        ids = {t["Id"] for t in batch_targets}
        health = tg.health()
        others_healthy = [t for t, s in health.items() if s == "healthy" and t not in ids]
        out = [t for t in batch_targets if t["Id"] in health]
        names = ", ".join(h.name for h in batch)
        with rep.step(names, "deregister") as s:
            if out and not others_healthy:
                s.ok("kept registered: it is the last healthy target (the handover keeps "
                     "it serving)")
                out = []
            elif out:
                tg.deregister(out)
                s.change(f"drained (deregistration delay {tg.delay} s)")
            else:
                s.ok("not registered yet")
        try:
            work(batch)
        except RailsfabError as exc:
            left = ", ".join(h.name for h in batch)
            exc.state = (f"the roll stopped at {left}, which stays out of the target group; "
                         "every other host is registered and healthy")
            if recover is None:
                raise
            try:
                recover(batch)
            except RailsfabError:
                raise exc from None
            with rep.step(names, "register") as s:
                tg.register(batch_targets)
                s.change("back in the target group, on the release it served before")
            exc.state = (f"the roll stopped at {left}: back on the release it served, verified "
                         "and back in the target group; no host runs the new release")
            raise
        with rep.step(names, "register") as s:
            tg.register(batch_targets)
            s.change("healthy in the target group")


def _is_ip(address: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(address)
        return True
    except ValueError:
        return False
