"""Shared test helpers: sandbox stages written to a temporary hosts.yaml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def shipped_stage(name: str = "sandbox") -> dict:
    """A stage as hosts.yaml ships it (app settings, packages...), as tests should use."""
    return yaml.safe_load((ROOT / "hosts.yaml").read_text())["stages"][name]


def shipped_app_settings(stage: str = "sandbox") -> dict:
    """The shipped stage's app block (packages, workers...)."""
    return dict(shipped_stage(stage)["app"])


def sandbox_hosts_yaml(folder: Path, *, stage: str, bridge: str, net: int,
                       hosts: dict[str, tuple[int, list[str]]],
                       source: Path | None = None, like: str = "sandbox") -> Path:
    """A hosts.yaml with one sandbox stage on 10.<net>.0.0/16, its state under `folder`, its
    app (and Debian release, certificate) like the shipped stage `like`.

    Each test sandbox gets its own bridge and subnet, so it never touches the user's
    sandbox (10.231.0.0/16) or another test's.
    """
    gw = f"10.{net}.0.1"
    addr = {name: f"10.{net}.1.{last}" for name, (last, _) in hosts.items()}
    db_host = next((addr[n] for n, (_, roles) in hosts.items() if "db" in roles), None)
    shipped = shipped_stage(like)
    app = {
        **shipped["app"],
        "source": str(source or ROOT / shipped["app"]["source"]),
        "secrets_file": f".railsfab/sandbox/{stage}/secrets.env",
    }
    if db_host:
        adapter = shipped["app"].get("database", {}).get("adapter", "mysql2")
        app["database"] = {"adapter": adapter, "host": db_host, "name": "itest_production",
                           "user": "itest"}
    debian = shipped.get("sandbox", {}).get("debian", 12)
    domain = shipped.get("aws", {}).get("certificate_domain")
    mirror = shipped.get("sandbox", {}).get("gem_mirror")
    if mirror:  # served on this sandbox's gateway
        app["gem_source_mirror"] = f"http://{gw}:{mirror.get('port', 9292)}"
    doc = {
        "default_stage": stage,
        "stages": {
            stage: {
                "sandbox": {"bridge": bridge, "subnet": f"10.{net}.0.0/16", "gateway": gw,
                            "debian": debian, **({"gem_mirror": mirror} if mirror else {})},
                "ssh": {"user": "admin", "key": f".railsfab/sandbox/{stage}/id_ed25519"},
                "hosts": [{"name": n, "address": addr[n], "roles": roles}
                          for n, (_, roles) in hosts.items()],
                "app": app,
                "aws": {"region": "ap-northeast-1", "endpoint_url": f"http://{gw}:5055",
                        "stack_name": f"sample-{stage}", "bucket": f"sample-uploads-{stage}",
                        "admin_cidr": f"{gw}/32", "apply_bucket_policy": False,
                        **({"certificate_domain": domain} if domain else {})},
                "apt_proxy": f"http://{gw}:8888",
            }
        },
    }
    path = folder / "hosts.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run_fab(stage_file: Path, *args: str, timeout: float = 1800, cwd: Path | None = None,
            bare: bool = False) -> subprocess.CompletedProcess:
    """`fab ARGS` as a user types it, against the inventory `stage_file`; `bare`: in an
    environment with nothing but PATH (no AWS settings, no virtualenv)."""
    env = {**({"PATH": "/usr/bin:/bin"} if bare else os.environ),
           "RAILSFAB_HOSTS": str(stage_file), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "fabric", "-r", str(ROOT), *args],
                          capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)


def run_host_spec(stage_file: Path, ssh_config: Path,
                  hosts: list[str]) -> subprocess.CompletedProcess:
    """The testinfra spec of tests/host with plain pytest, as a user runs it without fab."""
    return subprocess.run(
        ["pytest", "-q", "-p", "no:cacheprovider", str(ROOT / "tests/host"),
         "--hosts=" + ",".join(f"ssh://{h}" for h in hosts), f"--ssh-config={ssh_config}"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={"PATH": f"{ROOT / '.venv/bin'}:/usr/bin:/bin", "RAILSFAB_HOSTS": str(stage_file)},
    )


@contextmanager
def booted(stage_file: Path) -> Iterator:
    """The sandbox of `stage_file`, up for the block and removed after it, whatever happens."""
    from railsfab import inventory
    from railsfab.report import Reporter
    from railsfab.sandbox.core import Sandbox

    sbx = Sandbox(inventory.load(stage_file), Reporter())
    try:
        sbx.up()
        yield sbx
    finally:
        sbx.down()


EXAMPLE_HOSTS = {"web1": (11, ["web", "migrate"]), "web2": (12, ["web"]), "db": (20, ["db"])}


@contextmanager
def example_sandbox(folder: Path, example: str, *, stage: str, bridge: str, net: int,
                    git: bool = False) -> Iterator[Path]:
    """examples/<example> copied into `folder` (a git repository of its own with `git`),
    its stage's like on 10.<net>.0.0/16, booted for the block; yields the hosts.yaml."""
    if os.geteuid() != 0:
        raise RuntimeError("integration tests need root: they boot systemd-nspawn hosts")
    app = folder / example
    shutil.copytree(ROOT / "examples" / example, app,
                    ignore=shutil.ignore_patterns("node_modules"))
    if git:
        cmd = ["git", "-C", str(app), "-c", "user.name=t", "-c", "user.email=t@example.test"]
        for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "app"]):
            subprocess.run(cmd + args, check=True, capture_output=True)
    path = sandbox_hosts_yaml(folder, stage=stage, bridge=bridge, net=net, hosts=EXAMPLE_HOSTS,
                              source=app, like=example)
    with booted(path):
        yield path


def provisioned_deploy(stage_file: Path) -> subprocess.CompletedProcess:
    """`fab aws.provision` then `fab deploy`, both required to pass; the deploy's output."""
    provision = run_fab(stage_file, "aws.provision")
    assert provision.returncode == 0, provision.stdout + provision.stderr
    r = run_fab(stage_file, "deploy")
    assert r.returncode == 0, r.stdout + r.stderr
    return r
