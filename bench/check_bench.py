"""Time of `fab check` per host (target <= 2 s per host on the sandbox).

Run after README command (a), as root:  .venv/bin/python bench/check_bench.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from railsfab import inventory  # noqa: E402
from tests.conftest import run_fab  # noqa: E402


def main() -> None:
    stage_file = ROOT / "hosts.yaml"
    hosts = inventory.load(stage_file).hosts(role="web")
    times = []
    for _ in range(5):
        t0 = time.monotonic()
        r = run_fab(stage_file, "check")
        times.append(time.monotonic() - t0)
        if r.returncode != 0:
            raise SystemExit(r.stdout)
    med = statistics.median(times)
    print(f"fab check, {len(hosts)} hosts in parallel, median of 5: {med:.2f}s "
          f"({med / len(hosts):.2f}s per host; target <= 2 s per host)")


if __name__ == "__main__":
    main()
