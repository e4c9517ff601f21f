"""draw.io file of a model: AWS shapes from draw.io's own library, laid out along the
request path, so the picture can be edited by hand afterwards."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from railsfab.diagram.model import Group, Model, health_colour

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
