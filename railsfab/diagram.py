"""`fab diagram`: the stage's architecture as PNG, SVG (graphviz) and draw.io files.

`model` is pure: hosts.yaml plus whatever live state could be read (stack outputs, target
health per host) in, nodes / groups / edges out. The writers only draw a model, so a
stage that lacks something (no stack yet, AWS unreachable, no load balancer) is decided
in one place, and the three files cannot disagree.
"""

from __future__ import annotations

import base64
import re
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from railsfab.errors import RailsfabError
from railsfab.inventory import Inventory
from railsfab.paths import Paths

# Target health as the target group reports it -> colour. Anything else (initial,
# draining, unused, not registered, unknown) is grey: neither good nor known bad.
HEALTH_COLOURS = {"healthy": "#2E7D32", "unhealthy": "#C62828", "unavailable": "#C62828"}
GREY = "#757575"


def health_colour(state: str | None) -> str:
    return HEALTH_COLOURS.get(state or "", GREY)


@dataclass(frozen=True)
class Node:
    id: str
    kind: str  # client alb target_group target nginx app_server db database endpoint bucket host
    label: str
    group: str | None = None  # id of the innermost Group holding it
    health: str | None = None  # targets only: the target group's state, or "unknown"
    host: str | None = None  # the hosts.yaml host it runs on


@dataclass(frozen=True)
class Group:
    id: str
    kind: str  # vpc security_group host
    label: str
    parent: str | None = None
    health: str | None = None  # host groups: their target's health


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str = ""
    health: str | None = None  # target group -> target: coloured like the target


@dataclass
class Model:
    title: str
    nodes: list[Node] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def node(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.id == node_id)

    def children(self, group_id: str | None) -> tuple[list[Group], list[Node]]:
        return ([g for g in self.groups if g.parent == group_id],
                [n for n in self.nodes if n.group == group_id])


# --- the model ---------------------------------------------------------------------------


def model(inv: Inventory, outputs: dict | None, health: dict | None) -> Model:
    """The stage's architecture.

    outputs: the stack's outputs ({} when there is no stack; None when AWS was not reached).
    health:  target state per host name, as the target group reports it (None: unknown).
    """
    from railsfab.stack import names  # pure; the module itself pulls in boto3

    st = inv.stage
    app, a = st.app, st.aws
    paths = Paths(app.name, app.deploy_to, app.app_server)
    live = outputs is not None
    out = outputs or {}
    managed = bool(a.stack_name)  # railsfab's stack: ALB, SGs, endpoint, bucket
    has_lb = managed or bool(a.target_group_arn)
    provisioned = bool(out)
    if not live:
        suffix = "state unknown"
    elif managed and not provisioned:
        suffix = "not provisioned"
    else:
        suffix = ""

    m = Model(title=f"{app.name} — stage {inv.stage_name}")
    if not live:
        m.notes.append("AWS not reached: drawn from hosts.yaml alone, health unknown")
    elif managed and not provisioned:
        m.notes.append(f"stack {a.stack_name} not provisioned (`fab aws.provision`): "
                       "drawn from hosts.yaml alone")

    def tag(label: str) -> str:
        return f"{label}\n({suffix})" if suffix else label

    where = f"sandbox {st.sandbox.subnet}" if st.sandbox else a.region
    vpc = "vpc"
    m.groups.append(Group(vpc, "vpc", f"VPC {a.vpc_id or ''} ({where})".replace("  ", " ")))
    alb_sg = app_sg = vpc
    if managed:
        alb_sg, app_sg = "sg-alb", "sg-app"
        m.groups.append(Group(alb_sg, "security_group", tag(
            f"ALB security group {out.get('AlbSecurityGroupId', '')}".rstrip()
            + "\nHTTP :80 from anywhere"), parent=vpc))
        ssh = f", SSH from {a.admin_cidr}" if a.admin_cidr else ""
        m.groups.append(Group(app_sg, "security_group", tag(
            f"app security group {out.get('AppSecurityGroupId', '')}".rstrip()
            + f"\nHTTP :80 from the ALB only{ssh}"), parent=vpc))

    m.nodes.append(Node("client", "client", "clients (internet)"))
    if has_lb:
        if managed:
            alb = names(inv)["alb"]
            dns = out.get("AlbDnsName")
            m.nodes.append(Node("alb", "alb", tag(f"ALB {alb}" + (f"\n{dns}" if dns else "")),
                                group=alb_sg))
            tg_name = names(inv)["target_group"]
        else:
            m.nodes.append(Node("alb", "alb", "ALB\n(not managed by railsfab)", group=vpc))
            tg_name = _arn_name(a.target_group_arn)
        m.nodes.append(Node("tg", "target_group", tag(
            f"target group {tg_name}\nHTTP :80, health check /up"), group=vpc))
        m.edges.append(Edge("client", "alb", "HTTP :80"))
        m.edges.append(Edge("alb", "tg", "listener HTTP :80 → forward"))

    bucket = out.get("BucketName") or a.bucket
    s3_in = None  # where the app's S3 traffic goes first
    if bucket:
        m.nodes.append(Node("bucket", "bucket", tag(f"S3 bucket\n{bucket}")))
        s3_in = "bucket"
        if managed:
            vpce = out.get("VpcEndpointId")
            m.nodes.append(Node("endpoint", "endpoint", tag(
                "S3 gateway endpoint" + (f"\n{vpce}" if vpce else "")), group=vpc))
            m.edges.append(Edge("endpoint", "bucket", "S3 via gateway endpoint"))
            s3_in = "endpoint"

    db_cfg = app.database
    db_target = None
    for h in st.hosts:
        if "db" in h.roles:
            what = f"\nMariaDB {db_cfg.name}" if db_cfg else "\nMariaDB"
            m.nodes.append(Node(f"db-{h.name}", "db", f"{h.name} {h.address}{what}",
                                group=vpc, host=h.name))
            if db_cfg and db_cfg.host in (h.address, h.name):
                db_target = f"db-{h.name}"
    if db_cfg and db_target is None:  # RDS or another host outside this stage
        db_target = "database"
        m.nodes.append(Node("database", "database",
                            f"database {db_cfg.host}:{db_cfg.port}\n{db_cfg.name}", group=vpc))

    server = {"puma": "Puma", "unicorn": "Unicorn"}[app.app_server]
    threads = f" × {app.threads} threads" if app.app_server == "puma" else ""
    for h in st.hosts:
        if "web" not in h.roles:
            if "db" not in h.roles:
                m.nodes.append(Node(f"host-{h.name}", "host", f"{h.name} {h.address}",
                                    group=vpc, host=h.name))
            continue
        state = None
        if has_lb:
            state = "unknown" if health is None else health.get(h.name, "not registered")
        shown = {"unknown": "health unknown"}.get(state or "", state)
        label = f"{h.name} {h.address}" + (f" — {shown}" if shown else "")
        grp = f"host-{h.name}"
        m.groups.append(Group(grp, "host", f"{h.name} (EC2)", parent=app_sg, health=state))
        target, nginx, srv = f"target-{h.name}", f"nginx-{h.name}", f"app-{h.name}"
        port = app.http_port
        m.nodes.append(Node(target, "target", label, group=grp, health=state, host=h.name))
        m.nodes.append(Node(srv, "app_server",
                            f"{server}\n{paths.unit_name}\n{app.workers} workers{threads}"
                            + ("" if app.nginx else f"\nlistening on :{port}"),
                            group=grp, host=h.name))
        if has_lb:
            m.edges.append(Edge("tg", target, f"HTTP :{port}", health=state))
        else:
            m.edges.append(Edge("client", target, f"HTTP :{port}"))
        if app.nginx:
            m.nodes.append(Node(nginx, "nginx", "nginx :80", group=grp, host=h.name))
            m.edges.append(Edge(target, nginx, ""))
            m.edges.append(Edge(nginx, srv, f"unix:{paths.socket}"))
        else:  # puma alone on its port (the seed's first step)
            m.edges.append(Edge(target, srv, f"tcp :{port}"))
        if db_target:
            m.edges.append(Edge(srv, db_target, f"MySQL :{db_cfg.port}"))
        if s3_in:
            m.edges.append(Edge(srv, s3_in, "S3 API (HTTPS)"))
    return m


def _arn_name(arn: str | None) -> str:
    """`.../targetgroup/NAME/ID` -> NAME."""
    parts = (arn or "").split("/")
    return parts[1] if len(parts) >= 3 else (arn or "")


# --- live state (AWS) ------------------------------------------------------------------


def live_state(inv: Inventory) -> tuple[dict | None, dict | None, str | None]:
    """(stack outputs, target health per web host, why AWS could not be read).

    Never raises for AWS trouble: the diagram is still drawn, from hosts.yaml alone.
    """
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError

    from railsfab import aws, rolling, stack
    from railsfab.local import port_open

    a = inv.stage.aws
    if not (a.stack_name or a.target_group_arn):
        return {}, None, None  # nothing of this stage lives on AWS
    url = aws.clients(inv).endpoint_url
    if url:  # the sandbox's endpoint: a stopped one would hang boto3 in retries
        u = urlparse(url)
        port = u.port or (443 if u.scheme == "https" else 80)
        if not port_open(u.hostname or "", port, timeout=2):
            return None, None, f"AWS endpoint {url} not reachable"
    try:
        outputs = stack.outputs(inv)
        tg = rolling.TargetGroup(inv)
        if not tg.configured:
            return outputs, None, None
        states = tg.health()
        health = {}
        for h in inv.hosts(role="web"):
            try:
                health[h.name] = states.get(tg.target(h)["Id"], "not registered")
            except RailsfabError:
                health[h.name] = "unknown"  # no instance id for it: cannot tell
        return outputs, health, None
    # Something that answers but is not AWS (a proxy, a half-started moto) gives a
    # ResponseParserError, which is no BotoCoreError.
    except (BotoCoreError, ClientError, ResponseParserError, OSError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        return None, None, f"AWS not reached ({aws.clients(inv).endpoint_url or a.region}): {first}"


# --- PNG and SVG (the `diagrams` package over graphviz) ----------------------------------


def write_png_svg(m: Model, out_base: Path) -> tuple[Path, Path]:
    """out_base.png and out_base.svg, AWS icons; the SVG carries its icons inline."""
    if shutil.which("dot") is None:
        raise RailsfabError("graphviz's `dot` is not installed: the PNG and SVG need it",
                            step="diagram",
                            fix="apt-get install graphviz (scripts/setup installs it), "
                                "then `fab diagram` again")
    try:  # slow to import (it loads every provider's classes): only when drawing
        from diagrams import Cluster, Diagram
        from diagrams import Edge as DEdge
        from diagrams import Node as DNode
        from diagrams.aws.compute import EC2
        from diagrams.aws.database import RDS
        from diagrams.aws.network import ALB, Endpoint
        from diagrams.aws.storage import S3
        from diagrams.onprem.client import Users
        from diagrams.onprem.database import Mariadb
        from diagrams.onprem.network import Nginx
        from diagrams.programming.framework import Rails
    except ImportError:
        raise RailsfabError("the `diagrams` package is not installed", step="diagram",
                            fix=".venv/bin/pip install -e . (scripts/setup does it)") from None

    icons = {"client": Users, "alb": ALB, "target": EC2, "host": EC2, "nginx": Nginx,
             "app_server": Rails, "db": Mariadb, "database": RDS, "endpoint": Endpoint,
             "bucket": S3}
    plain = {"shape": "box", "style": "rounded,filled", "fillcolor": "#F2F3F3",
             "fixedsize": "false", "labelloc": "c", "width": "2.4", "height": "0.9"}
    out_base.parent.mkdir(parents=True, exist_ok=True)
    title = "\n".join([m.title, *m.notes])
    drawn: dict[str, object] = {}

    def draw(n: Node) -> None:
        attrs = {}
        if n.health is not None:
            attrs["fontcolor"] = health_colour(n.health)
        cls = icons.get(n.kind)
        drawn[n.id] = (cls(n.label, **attrs) if cls else
                       DNode(n.label, **{**plain, **attrs}))

    def group(g: Group) -> None:
        attrs = {"fontsize": "12", "margin": "16"}
        if g.kind == "security_group":
            attrs.update(pencolor="#DD3522", fontcolor="#DD3522", style="dashed",
                         bgcolor="#FFFFFF")
        elif g.kind == "vpc":
            attrs.update(pencolor="#8C4FFF", fontcolor="#8C4FFF", bgcolor="#FAF7FF")
        elif g.kind == "host":
            attrs.update(pencolor=health_colour(g.health), penwidth="2", bgcolor="#FFF8F0",
                         fontcolor="#232F3E")
        # "\l" ends a left-justified line in graphviz; "\n" would centre each line.
        with Cluster(g.label.replace("\n", "\\l") + "\\l", graph_attr=attrs):
            subgroups, nodes = m.children(g.id)
            for n in nodes:
                draw(n)
            # graphviz stacks sibling clusters bottom-up in LR: reversed, web1 is on top
            for s in reversed(subgroups):
                group(s)

    with Diagram(title, filename=str(out_base), outformat=["png", "svg"], show=False,
                 direction="LR", graph_attr={"pad": "0.5", "labelloc": "t", "fontsize": "18"},
                 edge_attr={"fontsize": "11"}):
        top_groups, top_nodes = m.children(None)
        for n in top_nodes:
            draw(n)
        for g in top_groups:
            group(g)
        for e in m.edges:
            colour = health_colour(e.health) if e.health is not None else "#545B64"
            drawn[e.source] >> DEdge(label=e.label, color=colour,
                                      fontcolor=colour) >> drawn[e.target]
    png, svg = out_base.with_suffix(".png"), out_base.with_suffix(".svg")
    _inline_svg_images(svg)
    return png, svg


def _inline_svg_images(svg: Path) -> None:
    """graphviz links each icon by its path in site-packages; embed them as data: URIs so
    the SVG still shows its icons when copied elsewhere."""
    def embed(match: re.Match) -> str:
        p = Path(match.group(2))
        if not p.is_file():
            return match.group(0)
        data = base64.b64encode(p.read_bytes()).decode()
        return f'{match.group(1)}="data:image/png;base64,{data}"'

    text = svg.read_text()
    svg.write_text(re.sub(r'(xlink:href|href)="(/[^"]+\.png)"', embed, text))


# --- draw.io -----------------------------------------------------------------------------

_AWS = ("sketch=0;outlineConnect=0;fontColor=#232F3E;gradientColor=none;strokeColor=none;"
        "dashed=0;verticalLabelPosition=bottom;verticalAlign=top;align=center;fontSize=12;"
        "fontStyle=0;aspect=fixed;pointerEvents=1;")
_PLAIN = ("rounded=1;whiteSpace=wrap;fillColor=#F2F3F3;strokeColor=#545B64;fontColor=#232F3E;"
          "fontSize=12;")
# kind -> (style, width, height); AWS shapes from draw.io's mxgraph.aws4 library.
_DRAWIO_SHAPES = {
    "client": (_AWS + "fillColor=#232F3D;shape=mxgraph.aws4.users;", 60, 60),
    "alb": (_AWS + "fillColor=#8C4FFF;shape=mxgraph.aws4.application_load_balancer;", 60, 60),
    "target": (_AWS + "fillColor=#ED7100;shape=mxgraph.aws4.instance2;", 60, 60),
    "host": (_AWS + "fillColor=#ED7100;shape=mxgraph.aws4.instance2;", 60, 60),
    "endpoint": (_AWS + "fillColor=#8C4FFF;shape=mxgraph.aws4.endpoints;", 60, 60),
    "bucket": (_AWS + "fillColor=#7AA116;shape=mxgraph.aws4.bucket;", 58, 60),
    "database": (_AWS + "fillColor=#C925D1;shape=mxgraph.aws4.resourceIcon;"
                 "resIcon=mxgraph.aws4.rds;", 60, 60),
}
_DRAWIO_GROUPS = {
    "vpc": ("shape=mxgraph.aws4.group;grIcon=mxgraph.aws4.group_vpc2;strokeColor=#8C4FFF;"
            "fillColor=none;verticalAlign=top;align=left;spacingLeft=30;fontColor=#8C4FFF;"
            "dashed=0;container=1;collapsible=0;"),
    "security_group": ("fillColor=none;strokeColor=#DD3522;verticalAlign=top;align=left;"
                       "spacingLeft=6;fontStyle=0;fontColor=#DD3522;whiteSpace=wrap;"
                       "container=1;collapsible=0;"),
    "host": ("rounded=1;arcSize=4;fillColor=#FFF8F0;verticalAlign=top;align=left;spacingLeft=6;"
             "fontColor=#232F3E;strokeWidth=2;container=1;collapsible=0;"),
}
# Left to right: the path of a request.
_COLUMN = {"client": 0, "alb": 1, "target_group": 2, "target": 3, "host": 3, "nginx": 4,
           "app_server": 5, "endpoint": 6, "db": 6, "database": 6, "bucket": 7}
_COL_W, _ROW_H, _CELL_W, _X0, _Y0 = 220, 200, 150, 40, 120
_PAD, _PAD_TOP, _LABEL_H = 16, 40, 56


def write_drawio(m: Model, path: Path) -> Path:
    """An uncompressed draw.io file: one mxCell per node, containers for the groups, edges."""
    boxes = _layout(m)
    mxfile = ET.Element("mxfile", host="railsfab", type="device")
    diagram = ET.SubElement(mxfile, "diagram", id="architecture", name=m.title)
    width = max(x + w for x, y, w, h in boxes.values()) + _X0
    height = max(y + h for x, y, w, h in boxes.values()) + _Y0
    graph = ET.SubElement(diagram, "mxGraphModel", dx="1200", dy="800", grid="1",
                          gridSize="10", guides="1", tooltips="1", connect="1", arrows="1",
                          fold="1", page="1", pageScale="1", pageWidth=str(int(width)),
                          pageHeight=str(int(height)), math="0", shadow="0")
    root = ET.SubElement(graph, "root")
    ET.SubElement(root, "mxCell", id="0")
    ET.SubElement(root, "mxCell", id="1", parent="0")
    ids = {g.id: f"g-{g.id}" for g in m.groups} | {n.id: f"n-{n.id}" for n in m.nodes}

    def cell(cid: str, value: str, style: str, parent: str | None, box) -> None:
        x, y, w, h = box
        if parent is not None:  # draw.io positions children relative to their container
            px, py, _, _ = boxes[parent]
            x, y = x - px, y - py
        c = ET.SubElement(root, "mxCell", id=cid, value=value, style=style, vertex="1",
                          parent=ids[parent] if parent else "1")
        ET.SubElement(c, "mxGeometry", x=str(int(x)), y=str(int(y)), width=str(int(w)),
                      height=str(int(h)), **{"as": "geometry"})

    title = "\n".join([m.title, *m.notes])
    t = ET.SubElement(root, "mxCell", id="title", value=title, vertex="1", parent="1",
                      style="text;align=left;verticalAlign=top;fontSize=16;fontStyle=1;"
                            "fontColor=#232F3E;whiteSpace=wrap;")
    ET.SubElement(t, "mxGeometry", x=str(_X0), y="20", width="900", height="60",
                  **{"as": "geometry"})
    for g in sorted(m.groups, key=lambda g: _depth(m, g)):  # containers before contents
        style = _DRAWIO_GROUPS[g.kind]
        if g.kind == "host":
            style += f"strokeColor={health_colour(g.health)};"
        cell(ids[g.id], g.label, style, g.parent, boxes[g.id])
    for n in m.nodes:
        style, _, _ = _DRAWIO_SHAPES.get(n.kind, (_PLAIN, 0, 0))
        if n.health is not None:
            style += f"fontColor={health_colour(n.health)};fontStyle=1;"
        cell(ids[n.id], n.label, style, n.group, boxes[n.id])
    for i, e in enumerate(m.edges):
        colour = health_colour(e.health) if e.health is not None else "#545B64"
        c = ET.SubElement(root, "mxCell", id=f"e{i}", value=e.label, edge="1", parent="1",
                          source=ids[e.source], target=ids[e.target],
                          style="edgeStyle=orthogonalEdgeStyle;rounded=0;endArrow=block;"
                                f"endFill=1;strokeColor={colour};fontColor={colour};"
                                "fontSize=10;labelBackgroundColor=#FFFFFF;")
        ET.SubElement(c, "mxGeometry", relative="1", **{"as": "geometry"})
    ET.indent(mxfile)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(mxfile).write(path, encoding="utf-8", xml_declaration=True)
    return path


def _depth(m: Model, g: Group) -> int:
    parents = {x.id: x.parent for x in m.groups}
    d, p = 0, g.parent
    while p is not None:
        d, p = d + 1, parents[p]
    return d


def _layout(m: Model) -> dict[str, tuple[float, float, float, float]]:
    """Absolute boxes: nodes in columns along the request path, one row per web host;
    each group just encloses what it holds."""
    hosts = list(dict.fromkeys(n.host for n in m.nodes if n.kind == "target"))
    rows = max(1, len(hosts))
    boxes: dict[str, tuple[float, float, float, float]] = {}
    next_row: dict[int, int] = {}
    for n in m.nodes:
        col = _COLUMN.get(n.kind, 6)
        if n.host in hosts and n.kind in ("target", "nginx", "app_server"):
            row = hosts.index(n.host)
        elif col <= 2:  # client, ALB, target group: level with the middle of the hosts
            row = (rows - 1) / 2
        else:  # below the web hosts' rows in their columns, from the top elsewhere
            row = next_row.get(col, rows if 3 <= col <= 5 else 0)
            next_row[col] = row + 1
        _, w, h = _DRAWIO_SHAPES.get(n.kind, (None, _CELL_W, 60))
        x = _X0 + col * _COL_W + (_CELL_W - w) / 2
        y = _Y0 + _PAD_TOP * 3 + row * _ROW_H
        boxes[n.id] = (x, y, w, h)
    # Groups from the innermost out, each around its nodes (and their labels) and subgroups.
    for g in sorted(m.groups, key=lambda g: -_depth(m, g)):
        subgroups, nodes = m.children(g.id)
        inner = [boxes[s.id] for s in subgroups]
        for n in nodes:
            x, y, w, h = boxes[n.id]
            extra = _LABEL_H if n.kind in _DRAWIO_SHAPES else 0  # label under the icon
            inner.append((x + w / 2 - _CELL_W / 2, y, _CELL_W, h + extra))
        if not inner:  # nothing in it: a small box where the VPC starts
            inner = [(_X0 + _COL_W, _Y0 + _PAD_TOP * 3, _CELL_W, 60)]
        x0 = min(b[0] for b in inner) - _PAD
        y0 = min(b[1] for b in inner) - _PAD_TOP
        x1 = max(b[0] + b[2] for b in inner) + _PAD
        y1 = max(b[1] + b[3] for b in inner) + _PAD
        boxes[g.id] = (x0, y0, x1 - x0, y1 - y0)
    return boxes
