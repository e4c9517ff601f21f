"""`fab diagram`: the stage's architecture as PNG, SVG (graphviz) and draw.io files.

`model` is pure: hosts.yaml plus whatever live state could be read (stack outputs, target
health per host) in, nodes / groups / edges out. The writers only draw a model, so a
stage that lacks something (no stack yet, AWS unreachable, no load balancer) is decided
in one place, and the three files cannot disagree.
"""

from __future__ import annotations

# Tests stand for a host without graphviz by patching `diagram.shutil.which`.
import shutil  # noqa: F401

from railsfab.diagram.drawio import write_drawio
from railsfab.diagram.graphviz import write_png_svg
from railsfab.diagram.live import live_state
from railsfab.diagram.model import (
    GREY,
    HEALTH_COLOURS,
    Edge,
    Group,
    Model,
    Node,
    health_colour,
    model,
)

__all__ = ["GREY", "HEALTH_COLOURS", "Edge", "Group", "Model", "Node", "health_colour",
           "live_state", "model", "write_drawio", "write_png_svg"]
