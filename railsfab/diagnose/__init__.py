"""`fab check`'s diagnosis: read a host in one round trip, then name the first broken layer.

Layers, in the order a request crosses them:
  network -> host -> nginx -> site config -> socket -> release -> app server -> Rails app
  -> assets -> database -> S3 -> load balancer -> security groups
On a stage without nginx (puma alone on a TCP port) nginx, site config and socket are
skipped, and the app server must listen on the port.
`evaluate()` is pure (probe data in, layer verdicts out), so each fault's diagnosis is
unit-tested from a table; the integration tests inject the same faults on real hosts.
Every broken layer is reported: the first in request order is the cause, the others its
consequences. A host nothing was deployed to is that, not a broken layer.

- `probe`: runs railsfab/onhost/check.py on the host (`s3_round_trip` reads the bucket,
  `security_groups` the hosts' instances' groups);
- `layers`: one object per layer (`layers.ALL`), each with its checks in order; `cloud`:
  the layers read from AWS;
- `base`: Verdict, the Context a layer judges in, and the Layer base class;
- `fleet`: what only the web hosts together show (the same assets on each), handed to
  each host's `evaluate` as its `fleet`.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from railsfab.diagnose.base import Context, Verdict
from railsfab.diagnose.fleet import same_assets
from railsfab.diagnose.layers import ALL, LAYERS
from railsfab.diagnose.probe import probe, s3_round_trip, security_groups
from railsfab.paths import Paths

__all__ = ["LAYERS", "NOT_DEPLOYED", "Verdict", "as_json", "evaluate", "first_broken",
           "not_deployed", "probe", "s3_round_trip", "same_assets", "security_groups"]


def evaluate(d: dict, *, workers: int, app_user: str, paths: Paths,
             s3: dict | None = None, lb: dict | None = None, health: str = "/up",
             https: bool = False, sg: dict | None = None, host: str = "",
             expected: dict | None = None, modes: dict | None = None,
             stage_db: str = "", fleet: dict | None = None) -> list[Verdict]:
    """Pure: the probe's data -> one verdict per layer, in order. `fleet`: what comparing
    the web hosts says about this one (`same_assets`)."""
    ctx = Context.of(d, workers=workers, app_user=app_user, paths=paths, s3=s3, lb=lb,
                     health=health, https=https, sg=sg, host=host, expected=expected,
                     modes=modes, stage_db=stage_db, fleet=fleet)
    if not deployed(d):
        return undeployed(d, ctx)
    verdicts = [layer.judge(d, ctx) for layer in ALL]
    broken = {v.layer: v for v in verdicts if v.status == "FAIL"}
    cause = next(iter(broken.values()), None)
    seen = set()
    while cause is not None and cause.blame in broken and cause.layer not in seen:
        seen.add(cause.layer)
        cause = broken[cause.blame]
    for v in broken.values():
        v.role = "cause" if v is cause else "consequence"
    return verdicts


def deployed(d: dict) -> bool:
    """Anything of the app on the host: a `current` link, a release, the app server's unit."""
    r = d.get("release")
    return r is None or bool(r.get("link") or r.get("releases") or r.get("unit_file"))


NOT_DEPLOYED = "not deployed"


def undeployed(d: dict, ctx: Context) -> list[Verdict]:
    """The host's own layers still count (disk, memory); the app's are not there yet."""
    p = ctx.paths
    own = [layer.judge(d, ctx) for layer in ALL[:2]]  # network, host
    rest = [Verdict(layer.name, "skip", "not deployed yet") for layer in ALL[2:]]
    release = next(i for i, v in enumerate(rest) if v.layer == "release")
    rest[release] = Verdict("release", NOT_DEPLOYED,
                            f"nothing deployed yet: no {p.current}, no release in {p.releases}, "
                            f"no {p.unit_name}", "fab deploy")
    return own + rest


def first_broken(verdicts: list[Verdict]) -> Verdict | None:
    """The cause: the first broken layer in request order, unless its evidence blames a
    later broken one."""
    return next((v for v in verdicts if v.role == "cause"),
                next((v for v in verdicts if v.status == "FAIL"), None))


def not_deployed(verdicts: list[Verdict]) -> Verdict | None:
    return next((v for v in verdicts if v.status == NOT_DEPLOYED), None)


def as_json(results: dict[str, list[Verdict]]) -> str:
    return json.dumps({h: [asdict(v) for v in vs] for h, vs in results.items()}, indent=2)
