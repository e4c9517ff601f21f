"""`fab check`'s diagnosis: read a host in one round trip, then name the first broken layer.

Layers, in the order a request crosses them:
  network -> nginx -> site config -> socket -> app server -> Rails app -> assets -> database
  -> S3 -> load balancer -> security groups
On a stage without nginx (puma alone on a TCP port) nginx, site config and socket are
skipped, and the app server must listen on the port.
`evaluate()` is pure (probe data in, layer verdicts out), so each fault's diagnosis is
unit-tested from a table; the integration tests inject the same faults on real hosts.

- `probe`: runs railsfab/onhost/check.py on the host (`s3_round_trip` reads the bucket,
  `security_groups` the hosts' instances' groups);
- `layers`: one object per layer (`layers.ALL`), each with its checks in order; `cloud`:
  the layers read from AWS;
- `base`: Verdict, the Context a layer judges in, and the Layer base class.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from railsfab.diagnose.base import Context, Verdict
from railsfab.diagnose.layers import ALL, LAYERS
from railsfab.diagnose.probe import probe, s3_round_trip, security_groups
from railsfab.paths import Paths

__all__ = ["LAYERS", "Verdict", "as_json", "evaluate", "first_broken", "probe",
           "s3_round_trip", "security_groups"]


def evaluate(d: dict, *, workers: int, deploy_user: str, paths: Paths,
             s3: dict | None = None, lb: dict | None = None, health: str = "/up",
             https: bool = False, sg: dict | None = None) -> list[Verdict]:
    """Pure: the probe's data -> one verdict per layer, in order."""
    ctx = Context.of(d, workers=workers, deploy_user=deploy_user, paths=paths, s3=s3, lb=lb,
                     health=health, https=https, sg=sg)
    return [layer.judge(d, ctx) for layer in ALL]


def first_broken(verdicts: list[Verdict]) -> Verdict | None:
    return next((v for v in verdicts if v.status == "FAIL"), None)


def as_json(results: dict[str, list[Verdict]]) -> str:
    return json.dumps({h: [asdict(v) for v in vs] for h, vs in results.items()}, indent=2)
