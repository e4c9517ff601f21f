"""fab diagram: the stage's architecture as PNG, SVG and draw.io files."""

from __future__ import annotations

from pathlib import Path

from railsfab.report import Reporter
from tasks._boundary import STAGE_HELP, command, load_stage


@command(name="diagram", help={
    "stage": STAGE_HELP,
    "out": "folder for architecture.png/.svg/.drawio (default: .railsfab/diagrams/<stage>)"})
def diagram(c, stage=None, out=None):
    """Draw the stage's architecture (ALB, hosts, socket, database, S3) with live health."""
    from railsfab import diagram as diagramlib

    inv = load_stage(stage)
    rep = Reporter()
    outputs, health, problem = diagramlib.live_state(inv)
    if problem:
        rep.info(f"[yellow]{problem}[/]")
    m = diagramlib.model(inv, outputs, health)
    for note in m.notes:
        rep.info(f"[yellow]note:[/] {note}")
    folder = Path(out) if out else inv.state_dir / "diagrams" / inv.stage_name
    base = folder / "architecture"
    drawio = diagramlib.write_drawio(m, base.with_suffix(".drawio"))  # needs no graphviz
    png, svg = diagramlib.write_png_svg(m, base)
    for p in (png, svg, drawio):
        rep.info(f"  {p}")
