"""`fab check`'s probe: what the host shows about an error the app logged, so that its fix
follows from evidence, not from the error's kind: the Debian package that provides a gem
Bundler could not find, the release's sources and precompiled manifest of an asset the app
could not find, the migration that creates a table the database lacks.

Part of the probe program (railsfab.diagnose.probe.PROGRAM): standard library only, nothing
runs at import, no top-level name shared with the other files.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess

# Bundler: "Could not find mini_magick-4.11.0 in locally installed gems",
# "Could not find gem 'x (~> 1.0)' in ...", "Could not find x-1.2 in any of the sources"
GEM_MISSING = re.compile(r"Could not find (?:gem '([\w.-]+)[^']*'|([\w.-]+?)-(\d[\w.]*)"
                         r"(?:-[\w_-]+)?) in ")
# Sprockets: The asset "application.css" is not present in the asset pipeline. (The app
# writes its log: a name is taken only as a logical asset path, never with "..", before
# root globs for it or a fix names it.)
ASSET_MISSING = re.compile(r'The asset "(\w[\w@+.-]*(?:/\w[\w@+.-]*)*)" is not present in '
                           r"the asset pipeline")
# MySQL/MariaDB, PostgreSQL, SQLite: the table a query needed and the database lacks
TABLE_MISSING = re.compile(r"Table '(?:[\w$]+\.)?([\w$]+)' doesn't exist|relation \"(?:\w+\.)?"
                           r"(\w+)\" does not exist|no such table: (\w+)")
CREATE_TABLE = r"create_table\s*\(?\s*[:\"']{}[\"']?[\s,)]"
# a migration file as Rails names it (its version goes into a printed command)
MIGRATION_FILE = re.compile(r"\d+_\w+\.rb")


def gem_evidence(line: str | None) -> dict | None:
    """The gem (and version) Bundler could not find, and the Debian package that provides
    that gem's spec (the version asked, else any), as dpkg knows it."""
    m = GEM_MISSING.search(line or "")
    if m is None:
        return None
    name, version = m.group(1) or m.group(2), m.group(3)
    found = {"gem": name, "version": version, "package": None, "provides": None}
    for spec in ([f"{name}-{version}.gemspec"] if version else []) + [f"{name}-"]:
        text = _dpkg_search(f"*/specifications/{spec}*")
        for row in text.splitlines():
            package, _, path = row.partition(": ")
            have = re.match(re.escape(name) + r"-(\d[\w.]*)\.gemspec$", os.path.basename(path))
            if have and "," not in package:
                found.update(package=package.split(":")[0], provides=have.group(1))
                return found
    return found


def _dpkg_search(pattern: str) -> str:
    try:
        return subprocess.run(["dpkg-query", "-S", pattern], capture_output=True, text=True,
                              timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def asset_evidence(release: str, lines: list[str]) -> dict | None:
    """An asset the app asked for and its precompiled manifest lacks: the manifest, and the
    release's source files of that name (none: the app asks for what it does not have)."""
    m = next((x for x in (ASSET_MISSING.search(line) for line in lines) if x), None)
    if m is None:
        return None
    name = m.group(1)
    if ".." in name.split("/"):
        return None
    stem = os.path.splitext(name)[0]
    sources = sorted({os.path.relpath(f, release)
                      for root in ("app/assets", "lib/assets", "vendor/assets")
                      for f in glob.glob(f"{release}/{root}/*/{stem}.*")
                      + glob.glob(f"{release}/{root}/{stem}.*")})
    manifests = sorted(glob.glob(f"{release}/public/assets/.sprockets-manifest-*.json")
                       + glob.glob(f"{release}/public/assets/manifest-*.json"))
    return {"asset": name, "sources": sources[:5],
            "manifest": os.path.relpath(manifests[0], release) if manifests else None}


def table_evidence(release: str, lines: list[str], db: dict | None) -> dict | None:
    """A table the app's query needed that the app's database lacks (its own login's list
    of tables), and the release's migration that creates it."""
    tables = (db or {}).get("tables")
    if tables is None:
        return None
    m = next((x for x in (TABLE_MISSING.search(line) for line in lines) if x), None)
    if m is None:
        return None
    table = next(g for g in m.groups() if g)
    if table in tables:
        return None
    found = {"table": table, "error": m.group(0), "file": None}
    pattern = re.compile(CREATE_TABLE.format(re.escape(table)))
    for path in sorted(glob.glob(f"{release}/db/migrate/*.rb")):
        if not MIGRATION_FILE.fullmatch(os.path.basename(path)):
            continue
        try:
            with open(path, errors="replace") as f:
                if pattern.search(f.read(1 << 20)):
                    found["file"] = os.path.basename(path)
        except OSError:
            continue
    return found
