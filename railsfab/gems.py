"""What an app's Gemfile asks of a host before anything is installed: its Ruby (the
Gemfile's `ruby` line, as Bundler reads it) and the gems Bundler will look for."""

from __future__ import annotations

import re

from railsfab.source import Source

RUBY_LINE = re.compile(r"""^\s*ruby\s+(?P<args>.+?)\s*(#.*)?$""", re.M)
QUOTED = re.compile(r"""["']([^"']+)["']""")
FILE_ARG = re.compile(r"""file:\s*["']([^"']+)["']""")
OPS = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b, ">": lambda a, b: a > b,
       "<": lambda a, b: a < b, ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b}


def ruby_requirement(source: Source) -> list[str] | None:
    """The Gemfile's `ruby` requirement(s) (e.g. ["3.3.8"] or ["~> 3.3", ">= 3.3.1"]), with
    `ruby file: ".ruby-version"` read from that file; None without a `ruby` line."""
    m = RUBY_LINE.search(source.text("Gemfile") or "")
    if not m:
        return None
    args = m.group("args")
    f = FILE_ARG.search(args)
    if f:
        text = (source.text(f.group(1)) or "").strip()
        return [text.removeprefix("ruby-")] if text else None
    reqs = [q for q in QUOTED.findall(args) if not q.endswith(("ruby", "jruby"))]
    return reqs or None


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:4])


def satisfies(version: str, requirements: list[str]) -> bool:
    """RubyGems' requirement semantics, for the operators a Gemfile's ruby line uses."""
    have = _version(version)
    for req in requirements:
        m = re.fullmatch(r"\s*(~>|>=|<=|!=|=|>|<)?\s*([\w.]+)\s*", req)
        if not m:
            return False
        op, want = m.group(1) or "=", _version(m.group(2))
        if op == "~>":
            # ~> 3.3 means >= 3.3, < 4; ~> 3.3.1 means >= 3.3.1, < 3.4
            upper = (*want[:-2], want[-2] + 1) if len(want) > 1 else (want[0] + 1,)
            if not (have >= want and have[:len(upper)] < upper):
                return False
        elif op == "=":
            # Bundler compares the versions given: "3.3" matches every 3.3.x
            if have[:len(want)] != want:
                return False
        elif not OPS[op](have, want):
            return False
    return True
