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


MISSING = re.compile(r"Could not find (?:gem '([\w.-]+)|([\w.-]+?)-\d[\w.]* in)")


def missing_gems(bundler_output: str) -> list[str]:
    """The gems Bundler said it could not find (`Could not find gem 'x'...`, or
    `Could not find x-1.2.3 in locally installed gems`)."""
    names = [a or b for a, b in MISSING.findall(bundler_output)]
    return list(dict.fromkeys(names))


def missing_gems_message(query_output: str, *, release: str) -> tuple[str, str]:
    """(message, fix) from onhost/gem_packages.sh's answer: which Debian package provides
    each missing gem, or that none does."""
    provided, unpackaged = [], []
    for line in query_output.strip().splitlines():
        gem, _, found = line.partition(" ")
        if found == "-" or not found:
            unpackaged.append(gem)
        else:
            package, _, version = found.partition(" ")
            provided.append((gem, package, version))
    said = [f"gem {g!r} is not installed: Debian package {p} ({v}) provides it"
            for g, p, v in provided]
    said += [f"gem {g!r} is not installed and no {release} package provides it"
             for g in unpackaged]
    fixes = []
    if provided:
        fixes.append("add " + " ".join(p for _, p, _ in provided) + " to app.packages in "
                     "hosts.yaml")
    if unpackaged:
        fixes.append("remove " + ", ".join(unpackaged) + " from the Gemfile (or move it to "
                     "a group in app.bundle_without), or install gems from rubygems.org "
                     "instead of Debian's packages")
    return "bundle install --local: " + "; ".join(said), "; ".join(fixes)
