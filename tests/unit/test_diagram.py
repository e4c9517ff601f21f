"""fab diagram: the model from hosts.yaml + live state, and the three files drawn from it."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET

import pytest
import yaml

from railsfab import diagram, inventory
from railsfab.errors import RailsfabError
from tests.conftest import sandbox_hosts_yaml

HOSTS = {"web1": (11, ["web", "migrate"]), "web2": (12, ["web"]), "db": (20, ["db"])}
OUTPUTS = {
    "AlbDnsName": "sample-unit-1234.ap-northeast-1.elb.amazonaws.com",
    "TargetGroupArn": "arn:aws:elasticloadbalancing:ap-northeast-1:1:targetgroup/sample-unit-tg/1",
    "BucketName": "sample-uploads-unit",
    "AppSecurityGroupId": "sg-0app",
    "AlbSecurityGroupId": "sg-0alb",
    "VpcEndpointId": "vpce-0123",
}


def stage(tmp_path, **app_changes) -> inventory.Inventory:
    path = sandbox_hosts_yaml(tmp_path, stage="unit", bridge="rfunit0", net=240, hosts=HOSTS)
    if app_changes:
        doc = yaml.safe_load(path.read_text())
        doc["stages"]["unit"]["app"].update(app_changes)
        path.write_text(yaml.safe_dump(doc))
    return inventory.load(path)


@pytest.fixture
def inv(tmp_path):
    return stage(tmp_path)


def edge_labels(m, source, target):
    return [e.label for e in m.edges if e.source == source and e.target == target]


def test_every_host_is_drawn_with_its_address(inv):
    m = diagram.model(inv, OUTPUTS, {"web1": "healthy", "web2": "healthy"})
    labels = "\n".join(n.label for n in m.nodes)
    for h in inv.stage.hosts:
        assert f"{h.name} {h.address}" in labels


def test_targets_show_their_health_in_label_and_colour(inv):
    m = diagram.model(inv, OUTPUTS, {"web1": "healthy", "web2": "unhealthy"})
    web1, web2 = m.node("target-web1"), m.node("target-web2")
    assert web1.label == "web1 10.240.1.11 — healthy" and web1.health == "healthy"
    assert web2.label.endswith("— unhealthy")
    assert diagram.health_colour(web1.health) != diagram.health_colour(web2.health)
    assert [e.health for e in m.edges if e.target == "target-web2"] == ["unhealthy"]


def test_the_listeners_and_health_path_are_the_stacks_as_read(inv):
    """An HTTPS stage: 443 forwards, 80 redirects, and the health check is the stack's."""
    front = {"health_path": "/healthz", "listeners": [
        "HTTPS :443 → forward", "HTTP :80 → redirect to HTTPS :443"]}
    m = diagram.model(inv, {**OUTPUTS, "_front": front}, {"web1": "healthy"})
    assert edge_labels(m, "client", "alb") == ["HTTPS :443, HTTP :80"]
    assert edge_labels(m, "alb", "tg") == [
        "listeners HTTPS :443 → forward; HTTP :80 → redirect to HTTPS :443"]
    assert "health check /healthz" in m.node("tg").label


def test_a_host_missing_from_the_target_group_is_shown_not_registered(inv):
    m = diagram.model(inv, OUTPUTS, {"web1": "healthy"})
    assert m.node("target-web2").label.endswith("— not registered")


def test_request_path_edges_carry_ports_and_the_socket(inv):
    m = diagram.model(inv, OUTPUTS, {"web1": "healthy", "web2": "healthy"})
    assert edge_labels(m, "client", "alb") == ["HTTP :80"]
    assert edge_labels(m, "alb", "tg") == ["listeners HTTP :80 → forward"]
    assert edge_labels(m, "tg", "target-web1") == ["HTTP :80"]
    assert edge_labels(m, "nginx-web1", "app-web1") == [
        "unix:/srv/sample/shared/tmp/sockets/unicorn.sock"]
    assert edge_labels(m, "app-web2", "db-db") == ["MySQL :3306"]
    assert edge_labels(m, "endpoint", "bucket") == ["S3 via gateway endpoint"]
    assert m.node("app-web1").label.startswith("Unicorn\nsample-unicorn.service")


def test_a_puma_stage_is_drawn_as_puma_with_its_socket(tmp_path):
    m = diagram.model(stage(tmp_path, app_server="puma"), OUTPUTS, {})
    assert m.node("app-web1").label.startswith("Puma\nsample-puma.service")
    assert "Unicorn" not in "\n".join(n.label for n in m.nodes)
    assert edge_labels(m, "nginx-web2", "app-web2") == [
        "unix:/srv/sample/shared/tmp/sockets/puma.sock"]


def test_puma_alone_is_drawn_without_nginx_on_its_port(tmp_path):
    m = diagram.model(stage(tmp_path, app_server="puma", nginx=False, port=3000), {}, None)
    assert not [n for n in m.nodes if n.kind == "nginx"]
    assert edge_labels(m, "target-web1", "app-web1") == ["tcp :3000"]
    assert [e.label for e in m.edges if e.target == "target-web1"] == ["HTTP :3000"]


def test_security_groups_enclose_the_alb_and_the_web_hosts(inv):
    m = diagram.model(inv, OUTPUTS, {})
    groups = {g.id: g for g in m.groups}
    assert m.node("alb").group == "sg-alb" and "sg-0alb" in groups["sg-alb"].label
    assert groups["host-web1"].parent == "sg-app" and "sg-0app" in groups["sg-app"].label
    assert m.node("target-web1").group == "host-web1"
    assert groups["sg-app"].parent == groups["sg-alb"].parent == "vpc"


def test_no_stack_yet_is_drawn_from_hosts_yaml_marked_not_provisioned(inv):
    m = diagram.model(inv, {}, None)
    assert "not provisioned" in m.node("alb").label
    assert "not provisioned" in m.node("bucket").label and "sample-uploads-unit" in (
        m.node("bucket").label)
    assert m.node("target-web1").label.endswith("— health unknown")
    assert any("not provisioned" in n for n in m.notes)


def test_aws_unreachable_says_so_and_leaves_health_unknown(inv):
    m = diagram.model(inv, None, None)
    assert any("AWS not reached" in n for n in m.notes)
    assert "state unknown" in m.node("alb").label
    assert {m.node(f"target-{w}").health for w in ("web1", "web2")} == {"unknown"}


def test_a_stage_without_load_balancer_sends_clients_to_the_hosts(tmp_path):
    path = sandbox_hosts_yaml(tmp_path, stage="unit", bridge="rfunit0", net=240, hosts=HOSTS)
    doc = yaml.safe_load(path.read_text())
    doc["stages"]["unit"]["aws"] = {"region": "ap-northeast-1"}
    path.write_text(yaml.safe_dump(doc))
    m = diagram.model(inventory.load(path), {}, None)
    kinds = {n.kind for n in m.nodes}
    assert not kinds & {"alb", "target_group", "bucket", "endpoint"}
    assert edge_labels(m, "client", "target-web1") == ["HTTP :80"]
    assert m.node("target-web1").label == "web1 10.240.1.11" and not m.notes


def test_drawio_file_is_mxgraph_xml_naming_every_host(inv, tmp_path):
    m = diagram.model(inv, OUTPUTS, {"web1": "healthy", "web2": "healthy"})
    root = ET.parse(diagram.write_drawio(m, tmp_path / "a.drawio")).getroot()
    assert root.tag == "mxfile"
    cells = root.findall("./diagram/mxGraphModel/root/mxCell")
    by_id = {c.get("id"): c for c in cells}
    text = "\n".join(c.get("value") or "" for c in cells)
    for h in inv.stage.hosts:
        assert h.name in text and h.address in text
    assert "mxgraph.aws4.application_load_balancer" in by_id["n-alb"].get("style")
    # web1's target sits in its host container, inside the app security group
    assert by_id["n-target-web1"].get("parent") == "g-host-web1"
    assert by_id["g-host-web1"].get("parent") == "g-sg-app"
    assert "container=1" in by_id["g-sg-app"].get("style")
    edges = [c for c in cells if c.get("edge") == "1"]
    assert len(edges) == len(m.edges)
    assert all(e.get("source") in by_id and e.get("target") in by_id for e in edges)


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz is not installed")
def test_png_and_svg_are_rendered_and_name_hosts_alb_and_bucket(inv, tmp_path):
    m = diagram.model(inv, OUTPUTS, {"web1": "healthy", "web2": "unhealthy"})
    png, svg = diagram.write_png_svg(m, tmp_path / "out" / "architecture")
    assert png.read_bytes().startswith(b"\x89PNG")
    root = ET.parse(svg).getroot()
    text = "\n".join(t for el in root.iter() if el.tag.endswith("text") for t in el.itertext())
    for word in ("web1", "web2", "db", "ALB sample-unit", "sample-uploads-unit", "unhealthy"):
        assert word in text
    assert "/site-packages/" not in svg.read_text()  # icons inlined: the SVG stands alone


def test_missing_graphviz_is_one_clear_error_naming_the_fix(inv, tmp_path, monkeypatch):
    monkeypatch.setattr(diagram.shutil, "which", lambda name: None)
    with pytest.raises(RailsfabError) as exc:
        diagram.write_png_svg(diagram.model(inv, OUTPUTS, {}), tmp_path / "x")
    assert "apt-get install graphviz" in exc.value.fix
