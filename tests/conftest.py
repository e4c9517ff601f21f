"""Shared test helpers: sandbox stages written to a temporary hosts.yaml."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def sandbox_hosts_yaml(folder: Path, *, stage: str, bridge: str, net: int,
                       hosts: dict[str, tuple[int, list[str]]]) -> Path:
    """A hosts.yaml with one sandbox stage on 10.<net>.0.0/16, its state under `folder`.

    Each test sandbox gets its own bridge and subnet, so it never touches the user's
    sandbox (10.231.0.0/16) or another test's.
    """
    gw = f"10.{net}.0.1"
    addr = {name: f"10.{net}.1.{last}" for name, (last, _) in hosts.items()}
    db_host = next((addr[n] for n, (_, roles) in hosts.items() if "db" in roles), None)
    app = {
        "name": "sample",
        "source": str(ROOT / "examples/sample_app"),
        "deploy_to": "/srv/sample",
        "secrets_file": f".railsfab/sandbox/{stage}/secrets.env",
    }
    if db_host:
        app["database"] = {"host": db_host, "name": "itest_production", "user": "itest"}
    doc = {
        "default_stage": stage,
        "stages": {
            stage: {
                "sandbox": {"bridge": bridge, "subnet": f"10.{net}.0.0/16", "gateway": gw},
                "ssh": {"user": "admin", "key": f".railsfab/sandbox/{stage}/id_ed25519"},
                "hosts": [{"name": n, "address": addr[n], "roles": roles}
                          for n, (_, roles) in hosts.items()],
                "app": app,
                "aws": {"region": "ap-northeast-1", "endpoint_url": f"http://{gw}:5055"},
                "apt_proxy": f"http://{gw}:8888",
            }
        },
    }
    path = folder / "hosts.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
