"""Requests served and failed during `fab restart-app` and during a deploy of a changed
release, under a 50-connection load through nginx on each web host; and the time from the
command's start until the new code answers.

Run after README command (a) (the sandbox up and deployed), as root:
    .venv/bin/python bench/restart_bench.py            # unicorn (the stage's default)
    .venv/bin/python bench/restart_bench.py puma       # switches the hosts to puma first
The puma run also measures the hot restart and the switches unicorn -> puma -> unicorn.
`--via alb` (the default on a stage with a stack) spreads the requests the way the ALB does,
only to the hosts its target group has in service (tests/integration/alb.py), as clients
behind it see a rolling restart; `--via direct` sends each connection to one host's nginx
whatever the target group says (what a host sees while it is out of service too).
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.live_stage import scratch_stage  # noqa: E402
from railsfab import inventory  # noqa: E402
from tests.conftest import run_fab  # noqa: E402
from tests.integration.alb import TargetGroupRoute  # noqa: E402
from tests.load import SLOW, Load  # noqa: E402


def measure(stage_file: Path, addresses: list[str], args: list[str], marker: str | None,
            *, alb: bool):
    route = TargetGroupRoute(inventory.load(stage_file)) if alb else nullcontext()
    with route, Load(addresses, connections=50, max_seconds=300, marker=marker,
                     in_service=route if alb else None) as load:
        time.sleep(2)
        t0 = time.monotonic()
        r = run_fab(stage_file, *args)
        done = time.monotonic() - t0
        time.sleep(2)
    if r.returncode != 0:
        raise SystemExit(r.stdout + r.stderr)
    for line in r.stdout.splitlines():
        if "after USR" in line or "side by side" in line:
            print("   ", line.strip())
    new_code = (load.marker_seen_at - t0) if marker and load.marker_seen_at else None
    return load.result, done, new_code


def report(what: str, res, took: float) -> None:
    print(f"  {what}: {res.ok} served, {res.failed} failed {res.errors or ''}, "
          f"{res.retried} closed without an answer (read errors; sent again), {res.slow} "
          f"over {SLOW} s (slowest {res.slowest:.1f} s); command took {took:.1f}s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("server", nargs="?", default="unicorn", choices=["unicorn", "puma"])
    parser.add_argument("--via", choices=["alb", "direct"], default=None)
    args = parser.parse_args()
    server = args.server
    unicorn_file, _ = scratch_stage()
    stage_file, app = scratch_stage(app_server=server)
    inv = inventory.load(stage_file)
    addresses = [h.address for h in inv.hosts(role="web")]
    alb = (args.via or ("alb" if inv.stage.aws.stack_name else "direct")) == "alb"
    assert run_fab(unicorn_file, "deploy").returncode == 0
    print(f"{server}; 50 connections, spread over {', '.join(addresses)} "
          + ("as the ALB spreads them" if alb else "directly, one host each"))
    if server == "puma":
        report("switch unicorn -> puma (deploy)", *measure(stage_file, addresses, ["deploy"],
                                                           None, alb=alb)[:2])
    report("restart-app", *measure(stage_file, addresses, ["restart-app"], None, alb=alb)[:2])
    if server == "puma":
        report("restart-app --hot", *measure(stage_file, addresses,
                                             ["restart-app", "--hot"], None, alb=alb)[:2])
    marker = f"bench release {int(time.time())}"
    view = app / "app/views/photos/index.html.erb"
    view.write_text(view.read_text() + f"\n<p>{marker}</p>\n")
    res, took, new_code = measure(stage_file, addresses, ["deploy"], marker, alb=alb)
    report("deploy (changed view)", res, took)
    print(f"    new code answered {new_code:.1f}s after the start")
    report("rollback", *measure(stage_file, addresses, ["rollback"], None, alb=alb)[:2])
    if server == "puma":
        report("switch puma -> unicorn (deploy)", *measure(unicorn_file, addresses, ["deploy"],
                                                           None, alb=alb)[:2])


if __name__ == "__main__":
    main()
