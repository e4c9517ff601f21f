"""The commands people run most, on the sandbox of README command (a), as commands (Python
start-up and imports included): a no-op `fab deploy` and `fab check`, interleaved, median of
7; and the SSH round trips a no-op deploy makes per host (counted in-process).

Targets: no-op deploy <= 1.0 s for the two sandbox hosts; fab check <= 2 s per host.
Run after README command (a), as root:  .venv/bin/python bench/noop_bench.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from railsfab import inventory, remote  # noqa: E402
from railsfab.deploy import deploy  # noqa: E402
from railsfab.report import Reporter  # noqa: E402
from tests.conftest import run_fab  # noqa: E402

RUNS = 7


def timed(stage_file: Path, *args: str) -> float:
    t0 = time.monotonic()
    r = run_fab(stage_file, *args)
    took = time.monotonic() - t0
    if r.returncode != 0:
        raise SystemExit(r.stdout + r.stderr)
    if args[0] == "deploy" and "0 changed" not in r.stdout:
        raise SystemExit("the stage is not deployed: run README command (a) first\n" + r.stdout)
    return took


def main() -> None:
    stage_file = ROOT / "hosts.yaml"
    inv = inventory.load(stage_file)
    n = len(inv.hosts(role="web"))
    timed(stage_file, "deploy")  # warm: the page cache, moto's first answers
    deploys, checks = [], []
    for _ in range(RUNS):
        deploys.append(timed(stage_file, "deploy"))
        checks.append(timed(stage_file, "check"))
    remote.ROUND_TRIPS.value = 0
    deploy(inv, Reporter(quiet=True))
    trips = remote.ROUND_TRIPS.value
    d, c = statistics.median(deploys), statistics.median(checks)
    print(f"{n} web hosts, median of {RUNS}, as commands (Python start-up included):")
    print(f"  fab deploy (no-op)  {d:.2f}s   target <= 1.0 s   "
          f"({trips} SSH round trips, {trips / n:.1f} per host)")
    print(f"  fab check           {c:.2f}s   {c / n:.2f}s per host, target <= 2 s per host")


if __name__ == "__main__":
    main()
