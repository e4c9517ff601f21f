"""fab diagram against the sandbox: the provisioned stack and live target health drawn."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from railsfab import stack
from tests.conftest import run_fab


@pytest.fixture(scope="module")
def drawn(stages, tmp_path_factory):
    # provisioned, and the hosts registered by a deploy through the target group
    stage_file = stages.unicorn(alb=True)
    out = tmp_path_factory.mktemp("diagram")
    r = run_fab(stage_file, "diagram", "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    return out, r


def svg_text(path) -> str:
    root = ET.parse(path).getroot()
    return "\n".join(t for el in root.iter() if el.tag.endswith("text") for t in el.itertext())


def drawio_text(path) -> str:
    root = ET.parse(path).getroot()
    assert root.tag == "mxfile"
    return "\n".join(c.get("value") or "" for c in root.iter("mxCell"))


def test_three_files_name_every_host_the_alb_and_the_bucket(drawn, inv):
    out, r = drawn
    files = [out / f"architecture.{ext}" for ext in ("png", "svg", "drawio")]
    for f in files:
        assert str(f) in r.stdout
    assert files[0].read_bytes().startswith(b"\x89PNG")
    names = stack.names(inv)
    bucket = stack.outputs(inv)["BucketName"]
    for text in (svg_text(files[1]), drawio_text(files[2])):
        for h in inv.stage.hosts:
            assert h.name in text and h.address in text
        assert f"ALB {names['alb']}" in text
        assert bucket in text
        assert "not provisioned" not in text


def test_web_hosts_are_drawn_healthy_from_the_target_group(drawn, inv):
    out, r = drawn
    text = drawio_text(out / "architecture.drawio")
    for h in inv.hosts(role="web"):
        assert f"{h.name} {h.address} — healthy" in text
    assert "AWS not reached" not in r.stdout
