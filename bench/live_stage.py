"""A copy of the sandbox stage whose app source is a scratch copy the bench may edit.

The hosts, key and known_hosts stay those of `fab sandbox.up` (made absolute), so the
benches run against the sandbox README command (a) brought up and deployed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def scratch_stage(stage: str = "sandbox", **app_settings) -> tuple[Path, Path]:
    doc = yaml.safe_load((ROOT / "hosts.yaml").read_text())
    st = doc["stages"][stage]
    st["app"].update(app_settings)
    folder = Path(tempfile.mkdtemp(prefix="railsfab-bench-"))
    app = folder / "app"
    shutil.copytree(ROOT / st["app"]["source"], app,
                    ignore=shutil.ignore_patterns("Gemfile.lock", "*.log"))
    st["app"]["source"] = str(app)
    st["app"]["secrets_file"] = str(ROOT / st["app"]["secrets_file"])
    st["ssh"]["key"] = str(ROOT / st["ssh"]["key"])
    st["ssh"]["known_hosts"] = str(ROOT / st["ssh"]["known_hosts"])
    if st.pop("sandbox", None):  # the bench must not rebuild hosts
        # ...but it talks to the sandbox's AWS endpoint, which takes dummy keys only
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    path = folder / "hosts.yaml"
    path.write_text(yaml.safe_dump({"default_stage": stage, "stages": {stage: st}}))
    return path, app
