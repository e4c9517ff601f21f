"""What only the fleet shows: whether every web host serves the same precompiled assets.

Behind the ALB a page from one host may ask another for a fingerprinted asset: when the
hosts precompiled separately, their digests differ and that request 404s. Each host's probe
reports its current release's manifest (railsfab/onhost/check_app.py `asset_manifest`);
`same_assets` compares them across the hosts that were probed and gives each host what
the assets layer says about it (`Context.fleet`), so the per-host verdicts stay pure.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from railsfab.facts import RELEASE_ID

SHA256 = re.compile(r"[0-9a-f]{64}")
SHORT = 12  # hex digits of a manifest's sha256 shown


@dataclass(frozen=True)
class Served:
    """One host's manifest, as read from its probe (the host's values, validated)."""

    host: str
    sha: str
    files: int | None
    release: str | None  # the id `current` points to; None when not railsfab's shape

    @property
    def short(self) -> str:
        return self.sha[:SHORT]

    def said(self) -> str:
        files = f"{self.files} files, " if self.files is not None else ""
        return f"{self.short} ({files}release {self.release or 'unknown'})"


def served(host: str, d: dict) -> Served | None:
    """The host's manifest; None when it has none (or its probe could not read it)."""
    r = d.get("release") or {}
    m = r.get("manifest") or {}
    sha = m.get("sha256")
    if not isinstance(sha, str) or not SHA256.fullmatch(sha):
        return None
    files = m.get("files")
    release = os.path.basename(r.get("target") or "")
    return Served(host, sha, files if type(files) is int and files >= 0 else None,
                  release if RELEASE_ID.fullmatch(release) else None)


def same_assets(docs: dict[str, dict], stage: str) -> dict[str, dict]:
    """Each probed host (in host order) -> the assets layer's fleet line about it:
    {"status": "ok" | "FAIL", "detail", "fix"}. The reference is the manifest most hosts
    serve (a tie: the one the first host in order serves); every other host fails."""
    have = {h: s for h, s in ((h, served(h, d)) for h, d in docs.items()) if s}
    lacking = [h for h in docs if h not in have]
    result = {h: ok(f"assets not compared ({unread(docs[h])})") for h in lacking}
    if len(have) < 2:
        why = "one host" if len(docs) < 2 else "no other host has a manifest"
        return {**result, **{h: ok(f"assets not compared ({why})") for h in have}}
    groups: dict[str, list[Served]] = {}
    for s in have.values():
        groups.setdefault(s.sha, []).append(s)
    # max() keeps the first of equals, and the groups are in host order: a tie is the first's
    ref = max(groups.values(), key=len)
    if len(groups) == 1:
        without = f" ({', '.join(lacking)}: no manifest)" if lacking else ""
        return {h: result.get(h) or ok(f"same assets on {len(ref)} hosts: {ref[0].short}"
                                       + without) for h in docs}
    odd = [s.host for g in groups.values() if g is not ref for s in g]
    differ = f"{', '.join(odd)} {'differs' if len(odd) == 1 else 'differ'}"
    for s in ref:
        also = [x.host for x in ref if x is not s]
        result[s.host] = ok(f"assets {s.short}" + (f", as on {', '.join(also)}" if also else "")
                            + f"; {differ}")
    for g in groups.values():
        if g is not ref:
            result.update({x.host: differs(x, ref, stage) for x in g})
    return {h: result[h] for h in docs}


def group_said(ref: list[Served]) -> str:
    """The reference's manifest (one content: one file count) and its release(s)."""
    releases = sorted({x.release or "unknown" for x in ref})
    files = f"{ref[0].files} files, " if ref[0].files is not None else ""
    return (f"{ref[0].short} ({files}release{'s' if len(releases) > 1 else ''} "
            f"{', '.join(releases)})")


def differs(s: Served, ref: list[Served], stage: str) -> dict:
    """A host of the minority: its manifest beside the reference's, and the fix its
    release calls for."""
    detail = (f"{s.host} serves assets manifest {s.said()}, "
              f"{', '.join(x.host for x in ref)} serve{'s' if len(ref) == 1 else ''} "
              f"{group_said(ref)}")
    ids = {x.release for x in ref}
    if s.release is not None and s.release in ids:
        return {"status": "FAIL", "detail": f"{detail}: release {s.release} was precompiled "
                "on each host separately (by hand or by an older railsfab)",
                "fix": f"deploy a new release with fab deploy --stage {stage}: it is built "
                       "once and every host receives the same files"}
    known = s.release is not None and None not in ids
    return {"status": "FAIL", "detail": detail + (": the hosts run different releases"
                                                  if known else ""),
            "fix": f"fab deploy --stage {stage} (puts every host on one release)"}


def unread(d: dict) -> str:
    """Why a host has no manifest to compare: none, or the probe's reason it read none."""
    error = ((d.get("release") or {}).get("manifest") or {}).get("error")
    return f"its manifest was not read: {str(error)[:200]}" if error else "no manifest"


def ok(detail: str) -> dict:
    return {"status": "ok", "detail": detail, "fix": ""}
