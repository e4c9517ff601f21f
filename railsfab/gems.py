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


PINNED = re.compile(r"Could not find gem '([\w.-]+) \(([^)']*)\)'")
MISSING = re.compile(r"Could not find (?:gem '([\w.-]+)|([\w.-]+?)-\d[\w.]* in)")


def missing_gems(bundler_output: str) -> list[str]:
    """The gems Bundler said it could not find (`Could not find gem 'x'...`, or
    `Could not find x-1.2.3 in locally installed gems`)."""
    names = [a or b for a, b in MISSING.findall(bundler_output)]
    return list(dict.fromkeys(names))


def pinned(bundler_output: str) -> dict[str, tuple[str, list[str]]]:
    """{gem: (the Gemfile's requirement, the versions installed)} for the gems Bundler could
    not find in the version asked (`Could not find gem 'rails (= 7.1.3.2)' ... The source
    contains the following gems matching 'rails': * rails-7.2.2.2`)."""
    out = {}
    for gem, req in PINNED.findall(bundler_output):
        block = re.search(r"matching '" + re.escape(gem) + r"':\n((?:\s*\* .*\n?)+)",
                          bundler_output)
        have = re.findall(r"\* " + re.escape(gem) + r"-(\d[\w.]*)", block.group(1)) if block \
            else []
        if have:
            out[gem] = (req, have)
    return out


def missing_gems_message(query_output: str, *, release: str,
                         bundler_output: str = "") -> tuple[str, str]:
    """(message, fix) from onhost/gem_packages.sh's answer: which Debian package provides
    each missing gem, or that none does; a gem installed in another version than the
    Gemfile pins is named as a pin (adding its package again would change nothing)."""
    pins = pinned(bundler_output)
    provided, unpackaged = [], []
    for line in query_output.strip().splitlines():
        gem, _, found = line.partition(" ")
        if gem in pins:
            continue
        if found == "-" or not found:
            unpackaged.append(gem)
        else:
            package, _, version = found.partition(" ")
            provided.append((gem, package, version))
    said = [f"the Gemfile pins {g} {req}; {release} has {', '.join(have)}"
            for g, (req, have) in pins.items()]
    said += [f"gem {g!r} is not installed: Debian package {p} ({v}) provides it"
             for g, p, v in provided]
    said += [f"gem {g!r} is not installed and no {release} package provides it"
             for g in unpackaged]
    fixes = []
    if pins:
        fixes.append("loosen the pin of " + ", ".join(pins) + " in the Gemfile (e.g. "
                     + "; ".join(f'gem "{g}", "~> {".".join(have[0].split(".")[:2])}"'
                                 for g, (_, have) in pins.items())
                     + "), or use gems: bundler with the app's Gemfile.lock")
    if provided:
        fixes.append("add " + " ".join(p for _, p, _ in provided) + " to app.packages in "
                     "hosts.yaml")
    if unpackaged:
        fixes.append("remove " + ", ".join(unpackaged) + " from the Gemfile (or move it to "
                     "a group in app.bundle_without), or install gems from rubygems.org "
                     "instead of Debian's packages")
    return "bundle install --local: " + "; ".join(said), "; ".join(fixes)


LINUX = ("ruby", "x86_64-linux", "x86_64-linux-gnu", "aarch64-linux", "aarch64-linux-gnu")


def lock_platforms(lock: str) -> list[str]:
    """The PLATFORMS a Gemfile.lock was resolved for."""
    m = re.search(r"^PLATFORMS\n((?:  \S.*\n?)+)", lock, re.M)
    return [x.strip() for x in m.group(1).splitlines()] if m else []


def server_gem_missing(gemfile: str, server: str, without: str) -> bool:
    """The app server's gem is not in the Gemfile outside the groups left out (Bundler
    would not load it: `bundle exec unicorn` fails at boot with a LoadError)."""
    skip, stack = set(without.split(":")), []
    for line in gemfile.splitlines():
        code = line.split("#", 1)[0]
        group = re.match(r"\s*group\s*\(?\s*(.*?)\)?\s+do\b", code)
        if group:
            stack.append(set(re.findall(r":(\w+)", group.group(1))))
        elif re.match(r"\s*end\s*$", code) and stack:
            stack.pop()
        elif re.match(r"""\s*gem\s*\(?\s*["']""" + re.escape(server) + r"""["']""", code):
            groups = set().union(*stack) if stack else set()
            inline = set(re.findall(r"(?:group|groups):\s*\[?([^\]]*)", code))
            groups |= set(re.findall(r":(\w+)", " ".join(inline)))
            if not groups or groups - skip:
                return False
    return True


# --- app.gems: bundler ----------------------------------------------------------------------

# Gems whose source (platform "ruby") builds a native extension, and the Debian packages
# with the headers it compiles against (build-essential and ruby-dev come with any of them).
# A gem the lockfile takes prebuilt (x86_64-linux...) needs none.
NATIVE: dict[str, tuple[str, ...]] = {
    "mysql2": ("libmariadb-dev",), "pg": ("libpq-dev",), "sqlite3": ("libsqlite3-dev",),
    "nokogiri": ("libxml2-dev", "libxslt1-dev", "zlib1g-dev"), "ffi": ("libffi-dev",),
    "psych": ("libyaml-dev",), "rmagick": ("libmagickwand-dev",),
    "eventmachine": ("libssl-dev",), "openssl": ("libssl-dev",), "puma": ("libssl-dev",),
    "bcrypt": (), "nio4r": (), "websocket-driver": (), "bootsnap": (), "msgpack": (),
    "date": (), "json": (), "racc": (), "io-console": (), "strscan": (), "bigdecimal": (),
    "unicorn": (), "kgio": (), "raindrops": (), "hiredis": (), "redcarpet": (),
    "stringio": (), "digest-crc": (), "ed25519": (), "bcrypt_pbkdf": (), "sassc": (),
    "oj": (), "byebug": (), "debug": (), "google-protobuf": (), "grpc": (),
}
LOCK_SPEC = re.compile(r"^ {4}([A-Za-z0-9_.-]+) \(([^)]+)\)$", re.M)


def locked_gems(lockfile: str) -> list[tuple[str, str, str]]:
    """(name, version, platform) of every gem a Gemfile.lock pins (its GEM sections)."""
    gems = []
    for name, full in LOCK_SPEC.findall(lockfile):
        version, _, platform = full.partition("-")
        gems.append((name, version, platform or "ruby"))
    return gems


def build_packages(lockfile: str) -> list[str]:
    """The Debian packages a host needs to build the lockfile's native gems from source."""
    needed: list[str] = []
    for name, _, platform in locked_gems(lockfile):
        if platform == "ruby" and name in NATIVE:
            needed += ["build-essential", "ruby-dev", *NATIVE[name]]
    return list(dict.fromkeys(needed))


def bundle_config(*, path: str, without: str, mirror: str | None) -> str:
    """Bundler's config for app.gems: bundler (BUNDLE_APP_CONFIG's `config`): the lockfile
    installed as it is (deployment mode: frozen) into the shared path, without the groups
    of app.bundle_without, from rubygems.org or its mirror."""
    lines = ["---", 'BUNDLE_DEPLOYMENT: "true"', f'BUNDLE_PATH: "{path}"',
             f'BUNDLE_WITHOUT: "{without}"']
    if mirror:
        lines.append(f'BUNDLE_MIRROR__HTTPS://RUBYGEMS__ORG/: "{mirror}"')
    return "\n".join(lines) + "\n"


NOT_IN_SOURCES = re.compile(
    r"Could not find ([A-Za-z0-9_.-]+)-(\d[\w.]*?)(?:-[a-z0-9_]+-\w+)? in (?:any of the sources|"
    r"locally installed gems|rubygems)"
    r"|Your bundle is locked to ([A-Za-z0-9_.-]+) \((\d[\w.]*?)(?:-[a-z0-9_]+-\w+)?\) from")


def installed_summary(bundler_output: str) -> str:
    """'installed rack-cors 2.0.1; 61 already in shared/bundle' from `bundle install`."""
    new = re.findall(r"^Installing (\S+) (\S+)", bundler_output, re.M)
    kept = len(re.findall(r"^Using ", bundler_output, re.M))
    if len(new) > 5:
        said = f"installed {len(new)} gems"
    else:
        said = ("installed " + ", ".join(f"{n} {v}" for n, v in new)) if new else "nothing new"
    return f"{said}; {kept} already in shared/bundle"


def unavailable_message(bundler_output: str, source: str) -> str | None:
    """A lockfile pinning a gem its source lacks, named with its version."""
    m = NOT_IN_SOURCES.search(" ".join(bundler_output.split()))  # Bundler wraps its lines
    if not m:
        return None
    name, version = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    return (f"the Gemfile.lock pins {name} {version}, which {source} does not have: "
            "nothing was switched")
