"""What an ALB would route to: the hosts its target group has in service, read from the
sandbox's AWS endpoint every POLL seconds, for tests/load.py's `in_service`. Like an ALB,
new requests go only to healthy targets (a draining or unregistered host gets none); when
none is healthy, to every registered one (the ALB's fail-open)."""

from __future__ import annotations

import threading

from railsfab import aws, stack
from railsfab.inventory import Inventory

POLL = 0.1


class TargetGroupRoute:
    def __init__(self, inv: Inventory) -> None:
        c = aws.clients(inv)
        self.elbv2 = c.elbv2
        self.arn = stack.outputs(inv)["TargetGroupArn"]
        by_ip = {h.address: h.address for h in inv.hosts(role="web")}
        self.address = {}  # target id (instance id or IP) -> the host's address
        for r in c.ec2.describe_instances()["Reservations"]:
            for i in r["Instances"]:
                if i.get("PrivateIpAddress") in by_ip:
                    self.address[i["InstanceId"]] = i["PrivateIpAddress"]
        self.address.update(by_ip)
        self.live: list[str] = []
        self.seen: set[tuple[str, ...]] = set()  # every set of hosts it routed to
        self._stop = threading.Event()
        self._read()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> TargetGroupRoute:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def __call__(self) -> list[str]:
        return self.live

    def _read(self) -> None:
        states = {t["Target"]["Id"]: t["TargetHealth"]["State"] for t in
                  self.elbv2.describe_target_health(TargetGroupArn=self.arn)
                  ["TargetHealthDescriptions"]}
        healthy = [t for t, s in states.items() if s == "healthy"]
        registered = [t for t, s in states.items() if s not in ("draining", "unused")]
        live = sorted(self.address[t] for t in (healthy or registered) if t in self.address)
        self.live = live
        self.seen.add(tuple(live))

    def _poll(self) -> None:
        while not self._stop.wait(POLL):
            try:
                self._read()
            except Exception:  # noqa: BLE001 - a failed read keeps the last known routes
                pass
