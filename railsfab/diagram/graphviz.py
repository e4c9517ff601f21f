"""PNG and SVG of a model: the `diagrams` package (AWS icons) over graphviz."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

from railsfab.diagram.model import Group, Model, Node, health_colour
from railsfab.errors import RailsfabError

# Kinds without an icon: a plain rounded box.
_PLAIN = {"shape": "box", "style": "rounded,filled", "fillcolor": "#F2F3F3",
          "fixedsize": "false", "labelloc": "c", "width": "2.4", "height": "0.9"}


def write_png_svg(m: Model, out_base: Path) -> tuple[Path, Path]:
    """out_base.png and out_base.svg, AWS icons; the SVG carries its icons inline."""
    _require_dot()
    kit = _diagrams()
    out_base.parent.mkdir(parents=True, exist_ok=True)
    title = "\n".join([m.title, *m.notes])
    drawn: dict[str, object] = {}
    with kit.Diagram(title, filename=str(out_base), outformat=["png", "svg"], show=False,
                     direction="LR",
                     graph_attr={"pad": "0.5", "labelloc": "t", "fontsize": "18"},
                     edge_attr={"fontsize": "11"}):
        top_groups, top_nodes = m.children(None)
        for n in top_nodes:
            _draw_node(kit, n, drawn)
        for g in top_groups:
            _draw_group(kit, m, g, drawn)
        for e in m.edges:
            colour = health_colour(e.health) if e.health is not None else "#545B64"
            drawn[e.source] >> kit.Edge(label=e.label, color=colour,
                                        fontcolor=colour) >> drawn[e.target]
    png, svg = out_base.with_suffix(".png"), out_base.with_suffix(".svg")
    _inline_svg_images(svg)
    return png, svg


def _require_dot() -> None:
    if shutil.which("dot") is None:
        raise RailsfabError("graphviz's `dot` is not installed: the PNG and SVG need it",
                            step="diagram",
                            fix="apt-get install graphviz (scripts/setup installs it), "
                                "then `fab diagram` again")


def _diagrams() -> SimpleNamespace:
    """The `diagrams` classes a drawing needs, and the icon class per node kind."""
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
    return SimpleNamespace(Cluster=Cluster, Diagram=Diagram, Edge=DEdge, Node=DNode,
                           icons=icons)


def _draw_node(kit: SimpleNamespace, n: Node, drawn: dict[str, object]) -> None:
    attrs = {}
    if n.health is not None:
        attrs["fontcolor"] = health_colour(n.health)
    cls = kit.icons.get(n.kind)
    drawn[n.id] = (cls(n.label, **attrs) if cls else
                   kit.Node(n.label, **{**_PLAIN, **attrs}))


def _draw_group(kit: SimpleNamespace, m: Model, g: Group, drawn: dict[str, object]) -> None:
    """A cluster holding the group's nodes and, recursively, its subgroups."""
    # "\l" ends a left-justified line in graphviz; "\n" would centre each line.
    with kit.Cluster(g.label.replace("\n", "\\l") + "\\l", graph_attr=_cluster_attrs(g)):
        subgroups, nodes = m.children(g.id)
        for n in nodes:
            _draw_node(kit, n, drawn)
        # graphviz stacks sibling clusters bottom-up in LR: reversed, web1 is on top
        for s in reversed(subgroups):
            _draw_group(kit, m, s, drawn)


def _cluster_attrs(g: Group) -> dict[str, str]:
    attrs = {"fontsize": "12", "margin": "16"}
    if g.kind == "security_group":
        attrs.update(pencolor="#DD3522", fontcolor="#DD3522", style="dashed",
                     bgcolor="#FFFFFF")
    elif g.kind == "vpc":
        attrs.update(pencolor="#8C4FFF", fontcolor="#8C4FFF", bgcolor="#FAF7FF")
    elif g.kind == "host":
        attrs.update(pencolor=health_colour(g.health), penwidth="2", bgcolor="#FFF8F0",
                     fontcolor="#232F3E")
    return attrs


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
