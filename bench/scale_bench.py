"""railsfab at 1, 2, 4 and 8 web hosts (plus a db host) behind the sandbox's ALB.

For each size N, on a stage of web1..webN + db (the hosts freshly booted for each size):
  fresh     `fab deploy` on fresh hosts (packages, release, assets, migrations...)
  no-op     `fab deploy` again: nothing changes (and the same on a copy of the stage
            without the ALB: no AWS call, boto3 not imported)
  (the stage with the ALB has app.artifact: s3: each release is put in the bucket once)
  changed   `fab deploy` of a changed release (an edited view) through the target group with
            the default rollout (the canary drained for its USR2 handover, then baked under
            the load; the other hosts' handovers at once, in service), under a
            50-connection load through nginx on the N hosts; failed requests counted
  hand      the floor of a USR2 rollout on this machine: by hand over ssh under the same
            load, no checks, no canary, no bake: USR2 on one host (web1), then on every
            host at once
  check     `fab check`
and the CPU the machine spent during each fresh deploy (on C cores a job of S core-seconds
takes S / C seconds at the least, whatever does it). Each is timed as a command (Python
start-up included), median of --reps (fresh: --fresh-reps, 1 by default: it is minutes at
N = 8). Sent: the bytes the controller sent over SSH during the command (bench/fab_bytes.py
counts paramiko's packets). Then the memory each sandbox host takes, with the app deployed
(PSS of its processes: systemd, sshd, nginx, unicorn and 2 workers on a web host; MariaDB on
db).

Run as root on a machine with scripts/setup done:  .venv/bin/python bench/scale_bench.py
It builds its own sandbox (bridge rfscale0, 10.241.0.0/16) in a temporary folder and removes
it at the end. Timings on a shared machine are noisy: see the load average it prints.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from railsfab import inventory  # noqa: E402
from railsfab.paths import Paths  # noqa: E402
from railsfab.report import Reporter  # noqa: E402
from railsfab.sandbox.core import Sandbox  # noqa: E402
from tests.conftest import sandbox_hosts_yaml  # noqa: E402
from tests.load import Load  # noqa: E402

NET, BRIDGE, STAGE = 241, "rfscale0", "scale"
MAX_WEB = 8
VIEW = "app/views/photos/index.html.erb"


def web_hosts(n: int) -> list[str]:
    return [f"web{i}" for i in range(1, n + 1)]


def stage_files(folder: Path, sizes: list[int]) -> tuple[Path, dict[int, tuple[Path, Path]]]:
    """The whole sandbox's hosts.yaml (8 web + db) and, beside it, two per size: the same
    sandbox, keys and state, listing web1..webN + db, with the default rollout; and that
    stage without its ALB."""
    app = folder / "app"
    shutil.copytree(ROOT / "examples/sample_app", app,
                    ignore=shutil.ignore_patterns("Gemfile.lock", "*.log", "cache"))
    hosts = {h: (10 + i, ["web", "migrate"] if i == 1 else ["web"])
             for i, h in enumerate(web_hosts(MAX_WEB), 1)}
    hosts["db"] = (20, ["db"])
    full = sandbox_hosts_yaml(folder, stage=STAGE, bridge=BRIDGE, net=NET, hosts=hosts,
                              source=app)
    doc = yaml.safe_load(full.read_text())
    per_size = {}
    for n in sizes:
        st = yaml.safe_load(yaml.safe_dump(doc["stages"][STAGE]))
        st["hosts"] = [h for h in st["hosts"] if h["name"] in web_hosts(n) + ["db"]]
        st["app"]["artifact"] = "s3"  # the release once through the bucket, whatever N
        path = folder / f"hosts-{n}.yaml"
        path.write_text(yaml.safe_dump({"default_stage": STAGE, "stages": {STAGE: st}},
                                       sort_keys=False))
        st["aws"].pop("stack_name")
        st["app"]["artifact"] = "upload"  # no AWS call at all
        no_alb = folder / f"hosts-{n}-no-alb.yaml"
        no_alb.write_text(yaml.safe_dump({"default_stage": STAGE, "stages": {STAGE: st}},
                                         sort_keys=False))
        per_size[n] = (path, no_alb)
    return full, per_size


def fab(stage_file: Path, *args: str) -> tuple[float, int, str]:
    """(seconds, bytes sent over SSH, output) of `fab ARGS` as a command."""
    out = stage_file.parent / "bytes"
    env = {**os.environ, "RAILSFAB_HOSTS": str(stage_file), "RAILSFAB_BYTES_OUT": str(out),
           "COLUMNS": "200"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as in a user's shell: bytecode cached
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "bench.fab_bytes", "-r", str(ROOT), *args],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    took = time.monotonic() - t0
    if r.returncode != 0:
        raise SystemExit(f"`fab {' '.join(args)}` failed:\n{r.stdout}{r.stderr}")
    return took, int(out.read_text()), r.stdout


def ssh_argv(sbx: Sandbox, host: str, command: str) -> list[str]:
    return ["ssh", "-F", str(sbx.ssh_config), "-o", "BatchMode=yes", host, command]


def ssh(sbx: Sandbox, host: str, script: str) -> str:
    r = subprocess.run(ssh_argv(sbx, host, script),
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise SystemExit(f"{host}: {script}: {r.stderr}")
    return r.stdout


def fresh_hosts(sbx: Sandbox, n: int) -> None:
    """web1..webN as just launched, and an empty database."""
    sbx.recreate(web_hosts(n))
    db = sbx.inv.stage.app.database
    ssh(sbx, "db", "sudo -n mysql -e " + shlex.quote(
        f"DROP DATABASE IF EXISTS `{db.name}`; CREATE DATABASE `{db.name}`"))


SHOW = os.environ.get("SCALE_SHOW") == "1"  # print each changed release's deploy output


def changed_release(stage_file: Path, app: Path, addresses: list[str]):
    """A deploy of an edited view under the 50-connection load: (seconds, bytes, failed,
    served, errors)."""
    marker = f"scale bench {time.time_ns()}"
    view = app / VIEW
    view.write_text(view.read_text().split("\n<!-- scale -->", 1)[0]
                    + f"\n<!-- scale -->\n<p>{marker}</p>\n")
    with Load(addresses, connections=50, max_seconds=900) as load:
        time.sleep(1)
        took, sent, out = fab(stage_file, "deploy")
        time.sleep(1)
    if SHOW:
        print(out, flush=True)
    res = load.result
    return took, sent, res.failed, res.ok, res.errors, handovers(out)


# The floor of a USR2 rollout, by hand: USR2 to the master, wait for the new master's
# workers, QUIT the old one, wait until it is gone; bash's own reads, no checks. No tool
# doing a USR2 per host can be faster here.
HAND_USR2 = r"""set -eu
pidf=$1; workers=$2; read -r old < "$pidf"; kill -USR2 "$old"
while :; do p=; [ -s "$pidf" ] && read -r p < "$pidf"; [ -n "$p" ] && [ "$p" != "$old" ] && break
  sleep 0.1; done
n=0; while [ "$n" -lt "$workers" ]; do sleep 0.1; n=0
  kids=; read -r kids < "/proc/$p/task/$p/children" || :
  for k in $kids; do case "$(tr '\0' ' ' < "/proc/$k/cmdline" 2>/dev/null)" in
    *worker*) n=$((n + 1)) ;; esac; done
done
kill -QUIT "$old"; while kill -0 "$old" 2>/dev/null; do sleep 0.1; done
"""


def cpu_busy() -> float:
    """Seconds of CPU this machine has spent busy (every core, /proc/stat) so far."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def hand_usr2(sbx: Sandbox, inv, addresses: list[str], hosts: list[str]) -> float:
    """Seconds for HAND_USR2 on `hosts` at once, under the load on every web host."""
    pid, workers = Paths.of(inv.stage.app).pid, str(inv.stage.app.workers)
    with Load(addresses, connections=50, max_seconds=900) as load:
        time.sleep(1)
        t0 = time.monotonic()
        procs = [subprocess.Popen(
            ssh_argv(sbx, h, f"sudo -n bash -s {shlex.quote(pid)} {workers}"),
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True) for h in hosts]
        for pr in procs:  # every host has its script before any is waited for
            pr.stdin.write(HAND_USR2)
            pr.stdin.close()
        errs = []
        for pr in procs:
            errs.append(pr.stderr.read())
            pr.wait(timeout=600)
        took = time.monotonic() - t0
        time.sleep(1)
    if any(pr.returncode for pr in procs):
        raise SystemExit(f"the hand USR2 failed: {errs}")
    if load.result.failed:
        print(f"  (the hand USR2 failed requests: {load.result.errors})", flush=True)
    return took


HANDOVER = re.compile(r"^\s+(web\d+)\s+changed\s+unicorn\s+([\d.]+)s\s", re.M)
BAKE = re.compile(r"^\s+web\d+\s+ok\s+bake\s+([\d.]+)s\s", re.M)


def handovers(out: str) -> tuple[float, float, float]:
    """From a changed release's output: the canary's handover (the first host's unicorn
    step), the longest of the other hosts' (all at once), and the bake, in seconds."""
    steps = [float(t) for _, t in HANDOVER.findall(out)]
    bake = BAKE.search(out)
    return (steps[0] if steps else 0.0, max(steps[1:], default=0.0),
            float(bake.group(1)) if bake else 0.0)


def measure(sbx: Sandbox, files: tuple[Path, Path], n: int, reps: int,
            fresh_reps: int, changed: bool = True) -> dict:
    stage_file, no_alb = files
    inv = inventory.load(stage_file)
    app = inv.resolve(inv.stage.app.source)
    addresses = [h.address for h in inv.hosts(role="web")]
    row: dict = {"n": n, "fresh": [], "noop": [], "noop_no_alb": [], "changed": [],
                 "steps": [], "check": [], "failed": 0, "served": 0, "errors": {},
                 "hand": [], "hand_one": [], "cpu": []}
    for i in range(fresh_reps):
        fresh_hosts(sbx, n)
        busy = cpu_busy()
        row["fresh"].append(fab(stage_file, "deploy")[:2])
        row["cpu"].append(cpu_busy() - busy)
        print(f"  N={n} fresh deploy {i + 1}: {row['fresh'][-1][0]:.1f}s", flush=True)
    for _ in range(reps):  # interleaved: drift on a noisy machine hits both alike
        for key, path in (("noop", stage_file), ("noop_no_alb", no_alb)):
            took, sent, out = fab(path, "deploy")
            if "0 changed" not in out:
                raise SystemExit(f"the no-op deploy changed something:\n{out}")
            row[key].append((took, sent))
    for i in range(reps if changed else 0):
        took, sent, failed, served, errors, steps = changed_release(stage_file, app, addresses)
        row["changed"].append((took, sent))
        row["steps"].append(steps)
        row["failed"] += failed
        row["served"] += served
        for k, v in errors.items():
            row["errors"][k] = row["errors"].get(k, 0) + v
        print(f"  N={n} changed release {i + 1}: {took:.1f}s, {served} requests served, "
              f"{failed} failed", flush=True)
    for _ in range(reps if changed else 0):
        row["hand_one"].append(hand_usr2(sbx, inv, addresses, ["web1"]))
        row["hand"].append(hand_usr2(sbx, inv, addresses, web_hosts(n)))
    if row["hand"]:
        print(f"  N={n} hand USR2 on web1: "
              + ", ".join(f"{t:.1f}s" for t in row["hand_one"])
              + "; on every host at once: "
              + ", ".join(f"{t:.1f}s" for t in row["hand"]), flush=True)
    for _ in range(reps):
        row["check"].append(fab(stage_file, "check")[:2])
    return row


def host_memory(sbx: Sandbox) -> dict[str, float]:
    """MiB of PSS of every process of each host (its nspawn and everything below it)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, rest = stat.read_text().split(" ", 1)
            children.setdefault(int(rest.rsplit(")", 1)[1].split()[1]), []).append(int(pid))
        except (OSError, ValueError, IndexError):
            continue
    sizes = {}
    for name, m in sbx.machines.items():
        todo, kb = [m.running_pid] if m.running_pid else [], 0
        while todo:
            pid = todo.pop()
            todo += children.get(pid, [])
            try:
                rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except OSError:
                continue
            kb += next(int(ln.split()[1]) for ln in rollup.splitlines() if ln.startswith("Pss:"))
        sizes[name] = kb / 1024
    return sizes


def med(samples: list[tuple[float, int]], i: int) -> float:
    return statistics.median(s[i] for s in samples)


def table(rows: list[dict], reps: int, fresh_reps: int, mem: dict[str, float]) -> str:
    k = 1024
    lines = [
        "| web hosts | fresh deploy | sent | no-op deploy (no ALB) | sent | changed release (ALB, "
        "canary + rest) | sent | failed / served under load | fab check |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        changed = (f"| {med(r['changed'], 0):.1f} s | {med(r['changed'], 1) / k:,.0f} KiB "
                   f"| {r['failed']} / {r['served']:,} ") if r["changed"] else "| - | - | - "
        lines.append(
            f"| {r['n']} | {med(r['fresh'], 0):.1f} s | {med(r['fresh'], 1) / k:,.0f} KiB "
            f"| {med(r['noop'], 0):.2f} s ({med(r['noop_no_alb'], 0):.2f} s) "
            f"| {med(r['noop'], 1) / k:,.0f} KiB " + changed
            + f"| {med(r['check'], 0):.2f} s |")
    webs = [v for h, v in mem.items() if h.startswith("web")]
    lines += [
        "",
        f"Median of {reps} (fresh deploy: {fresh_reps} sample{'s' if fresh_reps > 1 else ''}"
        f"); sent = bytes the controller sent over SSH during the command.",
        f"Memory per host (PSS, app deployed): web {min(webs):.0f}-{max(webs):.0f} MiB, "
        f"db {mem.get('db', 0):.0f} MiB; {len(mem)} hosts {sum(mem.values()):.0f} MiB.",
    ]
    if rows[0]["n"] == 1:
        for key, what in (("fresh", "fresh deploy"), ("changed", "changed release")):
            if rows[0][key]:
                one = med(rows[0][key], 0)
                lines.append(f"{what.capitalize()} vs 1 host: " + ", ".join(
                    f"{r['n']} hosts {med(r[key], 0) / one:.2f}x" for r in rows[1:]))
        for key, what in (("noop", "ALB"), ("noop_no_alb", "no ALB")):
            one = med(rows[0][key], 0)
            lines.append(f"No-op deploy vs 1 host ({what}): " + ", ".join(
                f"{r['n']} hosts {med(r[key], 0) / one:.2f}x" for r in rows[1:]))
    steps = [r for r in rows if r["steps"] and r["n"] > 1]
    if steps:
        lines.append("Changed release, in it (median): " + "; ".join(
            f"{r['n']} hosts: canary's handover {med(r['steps'], 0):.1f} s, bake "
            f"{med(r['steps'], 2):.1f} s, the other {r['n'] - 1} at once "
            f"{med(r['steps'], 1):.1f} s ({med(r['steps'], 1) / med(r['steps'], 0):.2f}x the "
            "canary's)" for r in steps))
    lines += floors(rows)
    return "\n".join(lines)


def floors(rows: list[dict]) -> list[str]:
    """What this machine allows: the hand USR2 at each size, and the CPU each job took (on
    `cores` cores, a job of C core-seconds takes C / cores seconds at the least)."""
    cores, one, lines = os.cpu_count() or 1, rows[0], []
    hands = [r for r in rows if r["hand"]]
    if hands:
        for key, what in (("hand_one", "on one host"), ("hand", "on every host at once")):
            said = [f"N={r['n']} {statistics.median(r[key]):.1f} s" for r in hands]
            if one["n"] == 1 and one["changed"]:
                said.append("vs 1 host's changed release with railsfab: " + ", ".join(
                    f"N={r['n']} {statistics.median(r[key]) / med(one['changed'], 0):.2f}x"
                    for r in hands[1:]))
            lines.append(f"USR2 by hand {what} (ssh, USR2, wait for the new workers, QUIT; no "
                         "checks, no canary, no bake), under the load on every host, median: "
                         + ", ".join(said))
    done = [r for r in rows if r["cpu"]]  # (under the load, every core is busy by design)
    if done:
        lines.append(f"CPU busy during the fresh deploy (core-seconds, median; on {cores} "
                     f"cores it takes at least that / {cores} s): " + ", ".join(
                         f"{r['n']} host{'s' if r['n'] > 1 else ''} "
                         f"{statistics.median(r['cpu']):.0f} (>= "
                         f"{statistics.median(r['cpu']) / cores:.0f} s)" for r in done))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1,2,4,8")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--fresh-reps", type=int, default=1)
    parser.add_argument("--no-changed", action="store_true",
                        help="leave out the changed-release deploys under load (minutes)")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if max(sizes) > MAX_WEB:
        raise SystemExit(f"at most {MAX_WEB} web hosts")
    folder = Path(tempfile.mkdtemp(prefix="railsfab-scale-"))
    full, per_size = stage_files(folder, sizes)
    sbx = Sandbox(inventory.load(full), Reporter(quiet=True))
    print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
    rows = []
    try:
        print(f"sandbox.up: {MAX_WEB} web hosts + db ...", flush=True)
        sbx.up()
        fab(full, "aws.provision")
        print("warm-up deploy on web1 (not measured) ...", flush=True)
        fab(full, "deploy", "--only", "web1")
        for n in sizes:
            rows.append(measure(sbx, per_size[n], n, args.reps, args.fresh_reps,
                                changed=not args.no_changed))
        mem = {h: v for h, v in host_memory(sbx).items()
               if h in web_hosts(max(sizes)) + ["db"]}
    finally:
        sbx.down()
        shutil.rmtree(folder, ignore_errors=True)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}\n")
    print(table(rows, args.reps, args.fresh_reps, mem))
    for r in rows:
        if r["errors"]:
            print(f"N={r['n']}: failed requests: {r['errors']}")


if __name__ == "__main__":
    main()
