"""Deploy speed, measured as ratios in one run (machines here are noisy).

Prints, on freshly booted sandbox hosts:
  - fresh `fab deploy` time for 1 and 2 hosts, next to a floor measured in the same run:
    the same heavy commands (apt install, one tar upload, bundle, precompile, migrate)
    sent over plain ssh with no checks, no rendering, no verification;
  - no-op re-deploy time, and its SSH round trips per host.
Targets: fresh <= 1.15x the floor; no-op <= 1.0 s as a command, 2 round trips per host.

The sandbox's shared .deb cache is warm for both sides (the first, unmeasured deploy fills
it), so both download nothing: the comparison is between tools, not mirror speeds.

Run as root:  .venv/bin/python bench/deploy_bench.py
It boots its own sandbox (bridge rfbench0, 10.235.0.0/16) and removes it at the end.
"""

from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from railsfab import commands, inventory, remote  # noqa: E402
from railsfab.deploy import deploy  # noqa: E402
from railsfab.ops.desired import BASE_PACKAGES, build  # noqa: E402
from railsfab.paths import Paths  # noqa: E402
from railsfab.report import Reporter  # noqa: E402
from railsfab.sandbox.core import Sandbox  # noqa: E402
from tests.conftest import run_fab, sandbox_hosts_yaml  # noqa: E402

REPS = int(os.environ.get("BENCH_REPS", "3"))
HOSTS = {"web1": (11, ["web", "migrate"]), "web2": (12, ["web"]), "db": (20, ["db"])}


def ssh(sbx: Sandbox, host: str, script: str, stdin: bytes | None = None) -> None:
    r = subprocess.run(["ssh", "-F", str(sbx.ssh_config), "-o", "BatchMode=yes", host, script],
                       input=stdin, capture_output=True)
    if r.returncode != 0:
        raise SystemExit(f"floor command failed on {host}: {script}\n{r.stderr.decode()}")


def floor(sbx: Sandbox, inv: inventory.Inventory, hosts: list[str]) -> float:
    """The heavy commands alone, over plain ssh, one after another per host."""
    app = inv.stage.app
    paths = Paths(app.name, app.deploy_to)
    rel = paths.release("floor")
    d = build(inv)
    archive = d.release_archive()  # the app's files and what railsfab adds (Gemfile.railsfab)
    env = d.env_text
    packages = list(dict.fromkeys(("nginx",) + BASE_PACKAGES + tuple(app.packages)))

    def prepare(h: str) -> None:
        ssh(sbx, h, "sudo -n sh -c " + shlex.quote(
            commands.apt_install_script(packages, update=False)))
        ssh(sbx, h, "sudo -n sh -c " + shlex.quote(
            f"useradd --system --create-home --user-group deploy; mkdir -p /etc/railsfab "
            f"{rel} && chown deploy: {rel} && cat > {paths.env_file}"), stdin=env.encode())
        ssh(sbx, h, f"sudo -n -u deploy tar -xzf - -C {rel}", stdin=archive)
        ssh(sbx, h, "sudo -n sh -c " + shlex.quote(
            str(commands.bundle_install(paths, rel, "deploy"))))
        ssh(sbx, h, "sudo -n sh -c " + shlex.quote(
            f"mkdir -p {rel}/tmp {rel}/log && chown deploy: {rel}/tmp {rel}/log && " +
            str(commands.rails(paths, rel, "deploy", app.rails_env, "assets:precompile"))))

    t0 = time.monotonic()
    with ThreadPoolExecutor(len(hosts)) as pool:
        list(pool.map(prepare, hosts))
    ssh(sbx, hosts[0], "sudo -n sh -c " + shlex.quote(
        str(commands.rails(paths, rel, "deploy", app.rails_env, "db:migrate"))))
    return time.monotonic() - t0


def reset(sbx: Sandbox, inv: inventory.Inventory, hosts: list[str]) -> None:
    sbx.recreate(hosts)
    db = inv.stage.app.database
    ssh(sbx, "db", "sudo -n mysql -e " + shlex.quote(
        f"DROP DATABASE IF EXISTS `{db.name}`; CREATE DATABASE `{db.name}`"))


def ours(stage_file: Path, hosts: list[str]) -> float:
    t0 = time.monotonic()
    r = run_fab(stage_file, "deploy", "--only", ",".join(hosts))
    if r.returncode != 0:
        raise SystemExit(r.stdout + r.stderr)
    return time.monotonic() - t0


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="railsfab-bench-"))
    stage_file = sandbox_hosts_yaml(folder, stage="bench", bridge="rfbench0", net=235,
                                    hosts=HOSTS)
    inv = inventory.load(stage_file)
    sbx = Sandbox(inv, Reporter(quiet=True))
    print("booting the bench sandbox ...", flush=True)
    try:
        sbx.up()
        print("warm-up deploy (fills the shared .deb cache; not measured) ...", flush=True)
        ours(stage_file, ["web1", "web2"])
        rows = []
        for hosts in (["web1"], ["web1", "web2"]):
            fs, os_ = [], []
            for i in range(REPS):  # interleaved, so drift on a noisy machine hits both
                reset(sbx, inv, hosts)
                fs.append(floor(sbx, inv, hosts))
                reset(sbx, inv, hosts)
                os_.append(ours(stage_file, hosts))
                print(f"  {len(hosts)} host(s), round {i + 1}: fab deploy {os_[-1]:.1f}s, "
                      f"floor {fs[-1]:.1f}s", flush=True)
            rows.append((len(hosts), statistics.median(os_), statistics.median(fs)))
        # No-op: in-process, to count round trips.
        remote.ROUND_TRIPS.value = 0
        t0 = time.monotonic()
        deploy(inv, Reporter(quiet=True))
        noop = time.monotonic() - t0
        trips = remote.ROUND_TRIPS.value
        noop_cli = ours(stage_file, ["web1", "web2"])
    finally:
        sbx.down()

    print()
    print(f"fresh deploy (fresh hosts, warm .deb cache; median of {REPS})")
    print(f"  {'hosts':>5}  {'fab deploy':>10}  {'plain-ssh floor':>15}  {'ratio':>6}  target")
    for n, o, f in rows:
        print(f"  {n:>5}  {o:>9.1f}s  {f:>14.1f}s  {o / f:>5.2f}x  <= 1.15x")
    print("no-op re-deploy (2 hosts)")
    print(f"  in-process  {noop:.2f}s ({noop / 2:.2f}s per host), {trips} SSH round trips "
          f"({trips / 2:.1f} per host); target <= 1.0 s as a command, 2 round trips per host")
    print(f"  fab deploy  {noop_cli:.2f}s including Python start-up")


if __name__ == "__main__":
    main()
