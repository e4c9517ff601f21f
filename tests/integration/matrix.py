"""The failure matrix's means: faults injected the way they happen (an app file edited, a
hosts.yaml setting, a template override, a host whose disk is full), the ALB-routed load
they run under, and what each host serves, read from its processes and its target group."""

from __future__ import annotations

import base64
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from railsfab import aws, stack
from tests.conftest import ROOT
from tests.integration.alb import TargetGroupRoute
from tests.integration.test_deploy import ssh
from tests.load import Load

WEB = ("web1", "web2")
LAYOUT = "app/views/layouts/application.html.erb"
PATTERN = {"unicorn": "^unicorn (master|worker)", "puma": "^puma[ :]"}


@dataclass
class Ctx:
    """What a fault is injected into: the app's source, the stage file, the sandbox."""
    app: Path
    stage: Path
    sandbox: object
    inv: object


# A fault: a context manager factory that, given a Ctx, injects it and yields the stage file
# to run the command with; undone on leaving.
Inject = Callable[[Ctx], AbstractContextManager[Path]]


def app_edit(path: str, text: str) -> Inject:
    """`text` put before the content of the app's file `path` (a new file when none)."""
    @contextmanager
    def inject(c: Ctx) -> Iterator[Path]:
        target = c.app / path
        good = target.read_text() if target.exists() else None
        target.write_text(text + (good or ""))
        try:
            yield c.stage
        finally:
            if good is None:
                target.unlink()
            else:
                target.write_text(good)
    return inject


def stage_edit(name: str, change: Callable[[dict], None]) -> Inject:
    """The stage file changed by `change` (its stage's dict), as a copy beside it."""
    @contextmanager
    def inject(c: Ctx) -> Iterator[Path]:
        doc = yaml.safe_load(c.stage.read_text())
        change(doc["stages"][doc["default_stage"]])
        path = c.stage.with_name(f"{c.stage.stem}-{name}.yaml")
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        yield path
    return inject


def on_web1(do: str, undo: str) -> Inject:
    """A command run as root on web1 (the first host of every roll) and its undo."""
    @contextmanager
    def inject(c: Ctx) -> Iterator[Path]:
        ssh(c.sandbox, "web1", f"sudo sh -c {shlex.quote(do)}")
        try:
            yield c.stage
        finally:
            ssh(c.sandbox, "web1", f"sudo sh -c {shlex.quote(undo)}")
    return inject


def template_edit(name: str, old: str, new: str) -> Inject:
    """The stage's own override of a built-in template, with `old` replaced by `new`."""
    @contextmanager
    def inject(c: Ctx) -> Iterator[Path]:
        override = c.inv.root / "templates" / name
        override.parent.mkdir(exist_ok=True)
        override.write_text((ROOT / "templates" / name).read_text().replace(old, new))
        try:
            yield c.stage
        finally:
            override.unlink()
    return inject


def both(*injects: Inject) -> Inject:
    """Every one of `injects`, each on the stage file the one before yields."""
    return lambda c: _nested(injects, c)


@contextmanager
def _nested(injects, c: Ctx) -> Iterator[Path]:
    if not injects:
        yield c.stage
        return
    with injects[0](c) as stage:
        with _nested(injects[1:], Ctx(c.app, stage, c.sandbox, c.inv)) as last:
            yield last


def served_release(sandbox, host: str, server: str) -> set[str]:
    """The releases the app server's processes run from (their working directories)."""
    out = ssh(sandbox, host, f"for p in $(pgrep -u sample -f '{PATTERN[server]}'); do "
                             "sudo readlink /proc/$p/cwd; done")
    return {line.rsplit("/", 1)[-1] for line in out.split()}


def target_states(inv) -> dict[str, str]:
    tg = stack.outputs(inv)["TargetGroupArn"]
    return {t["Target"]["Id"]: t["TargetHealth"]["State"] for t in aws.clients(
        inv).elbv2.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]}


def all_healthy(inv) -> bool:
    states = target_states(inv)
    return set(states.values()) == {"healthy"} and len(states) == len(WEB)


def under_alb_load(inv, action):
    """`action()` while 50 connections request / the way the ALB spreads them; returns its
    result and the Load (checked to have got going)."""
    addresses = [h.address for h in inv.hosts(role="web")]
    with TargetGroupRoute(inv) as route, Load(addresses, connections=50, max_seconds=600,
                                              in_service=route) as load:
        time.sleep(1)
        r = action()
        time.sleep(1)
    assert load.result.ok > 100, "the load generator did not get going"
    return r, load


def plant(sandbox, release: str, text: str | None) -> None:
    """As the app's deploy user, put (or with None, take away) an initializer in `release`
    (on every web host)."""
    f = f"/srv/sample/releases/{release}/config/initializers/zz_matrix.rb"
    b64 = base64.b64encode(f"{text}\n".encode()).decode() if text else ""
    cmd = f"echo {b64} | base64 -d | sudo -u deploy tee {f} >/dev/null" if text else \
        f"sudo -u deploy rm -f {f}"
    for h in WEB:
        ssh(sandbox, h, cmd)


def fab_watched(stage: Path, *args: str, on_line: Callable[[str], None]
                ) -> subprocess.CompletedProcess:
    """`fab ARGS` like run_fab, its output (stdout and stderr as one) handed line by line to
    `on_line` as it comes: a fault injected at a point the output names."""
    env = {**os.environ, "RAILSFAB_HOSTS": str(stage), "COLUMNS": "200",
           "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen([sys.executable, "-m", "fabric", "-r", str(ROOT), *args], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in p.stdout:
        lines.append(line)
        on_line(line)
    p.wait(timeout=60)
    return subprocess.CompletedProcess(p.args, p.returncode, "".join(lines), "")
