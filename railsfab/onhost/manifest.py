"""A release's precompiled asset manifest, read as root without following a link: shared by
fab check's probe (check_app) and the deploy's facts (facts.py), so both name a build the
same way (the manifest's sha256: two hosts with the same manifest serve the same digests).
Standard library only; nothing at import.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat


def open_plain(path: str):
    """A regular file opened for reading without following a link anywhere on its path: the
    app's logs are in folders the app and deploy users write, and root reads them here (a
    link planted there to /etc/shadow raises OSError instead of printing it)."""
    nofollow = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open("/", nofollow | os.O_DIRECTORY)
    try:
        parts = [p for p in path.split("/") if p]
        for part in parts[:-1]:
            nxt = os.open(part, nofollow | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        leaf = os.open(parts[-1], nofollow | os.O_NONBLOCK, dir_fd=fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(leaf).st_mode):
        os.close(leaf)
        raise OSError(f"{path} is not a regular file")
    return os.fdopen(leaf, "rb")


# The precompiled assets' manifest, as the asset pipeline names it: Sprockets 3+
# (.sprockets-manifest-<hex>.json; of several, Sprockets takes the first by name), Sprockets
# 2 (manifest-<hex>.json), Propshaft (.manifest.json, every entry one digested file)

MANIFEST_NAMES = (re.compile(r"\.sprockets-manifest-[0-9a-f]{1,64}\.json"),
                  re.compile(r"manifest-[0-9a-f]{1,64}\.json"), re.compile(r"\.manifest\.json"))
MANIFEST_LIMIT = 16 << 20  # bytes of a manifest read (a large app's is a few MiB)


def asset_manifest(current: str, releases: str) -> dict | None:
    """The current release's precompiled asset manifest: its name in the release, the sha256
    of its content and how many digested files it lists; None when it has none. The
    release is the deploy user's: only a release directly in `releases` (no link on the
    way) is read, and no link inside it is followed (public/assets a link elsewhere, or
    the manifest a link to /etc/shadow, reads nothing)."""
    release = os.path.realpath(current)
    if not os.path.isdir(release):
        return None
    if os.path.dirname(release) != os.path.normpath(releases):
        return {"name": None, "sha256": None, "files": None,
                "error": f"{current} resolves to {release}, not a release in {releases}"}
    assets = os.path.join(release, "public", "assets")
    try:
        names = sorted(os.listdir(assets)) if os.path.realpath(assets) == assets else []
    except OSError:
        names = []
    kind, name = next(((i, n) for i, pattern in enumerate(MANIFEST_NAMES) for n in names
                       if pattern.fullmatch(n)), (None, None))
    if name is None:
        return None
    found = {"name": f"public/assets/{name}", "sha256": None, "files": None}
    try:
        with open_plain(os.path.join(assets, name)) as f:
            data = f.read(MANIFEST_LIMIT + 1)
    except OSError as e:
        return {**found, "error": str(e)[:200]}
    if len(data) > MANIFEST_LIMIT:
        return {**found, "error": f"larger than {MANIFEST_LIMIT >> 20} MiB"}
    return {**found, "sha256": hashlib.sha256(data).hexdigest(),
            "files": digested(data, propshaft=kind == 2)}


def digested(manifest: bytes, propshaft: bool) -> int | None:
    """How many digested files a manifest lists (Sprockets': its "files"; Propshaft's: every
    entry); None when it is not JSON of that shape."""
    try:
        doc = json.loads(manifest)
    except ValueError:
        return None
    files = doc if propshaft or not isinstance(doc, dict) else doc.get("files")
    return len(files) if isinstance(files, dict) else None
