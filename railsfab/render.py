"""Jinja2 over templates/: StrictUndefined, so a missing setting fails at render time."""

from __future__ import annotations

import posixpath
from pathlib import Path

import jinja2

from railsfab.errors import RailsfabError

BUILTIN = Path(__file__).resolve().parents[1] / "templates"
HEADER = "Rendered by railsfab from templates/{name}: edit the template, not this file."


def environment(project_root: Path | None = None) -> jinja2.Environment:
    """A project's own templates/ folder overrides railsfab's built-in templates."""
    search = [str(p) for p in (project_root and project_root / "templates", BUILTIN)
              if p and p.is_dir()]
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(list(dict.fromkeys(search))),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["dirname"] = posixpath.dirname
    env.filters["rb"] = ruby_string
    return env


def ruby_string(value: object) -> str:
    """A Ruby double-quoted string literal of `value`: nothing in it is code (no #{...}
    interpolation, no way out of the quotes). hosts.yaml's shapes already keep such
    characters out; this holds even if a template is given something else."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("#", "\\#")
    return '"' + text.replace("\n", "\\n") + '"'


def render(env: jinja2.Environment, name: str, **context) -> str:
    try:
        return env.get_template(name).render(header=HEADER.format(name=name), **context)
    except jinja2.TemplateSyntaxError as exc:
        raise RailsfabError(f"templates/{name}:{exc.lineno}: {exc.message}", step="render",
                            fix=f"fix the template syntax in templates/{name}") from None
    except jinja2.UndefinedError as exc:
        raise RailsfabError(f"templates/{name}: {exc.message}", step="render",
                            fix="use only settings that exist in the render context") from None
