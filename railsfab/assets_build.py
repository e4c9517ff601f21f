"""Assets built once per release, the same files on every host.

Each host precompiling on its own costs N times the CPU, and behind an ALB two hosts whose
digests differ break pages: one host's page asks another for an asset it does not have
(Capistrano's classic bug; Kamal avoids it by building into the image). So one host (the
builder: the first that needs it) runs `assets:precompile`; railsfab reads its
public/assets back (checked here: regular files and folders under assets/ only, repacked
by railsfab, never the host's archive as it came), keeps it under
.railsfab/assets/<stage>/<asset inputs digest>.tar.gz, and every other host unpacks that
archive into its new release: no precompile, no node there. A later release with the same
asset inputs takes the kept archive (or the previous release's assets, as before), and
builds nowhere.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import os
import tarfile
import threading
from pathlib import Path

from railsfab import remote
from railsfab.errors import RailsfabError
from railsfab.ops.base import Change, Planned
from railsfab.ops.desired import Desired
from railsfab.ops.release import as_deploy_user, open_public

KEEP = 3  # archives kept per stage
LIMIT = 1 << 30  # the most the built assets may take, unpacked
WAIT = 2400  # the longest a host waits for the builder (its precompile may take 1800 s)


class Shared:
    """The one build of this release's assets: set once by the builder (or from the kept
    archive), read by every other host's assets step."""

    def __init__(self, d: Desired, kept: Path, builder: str | None) -> None:
        self.d, self.kept, self.builder = d, kept, builder
        self.data: bytes | None = kept.read_bytes() if builder is None else None
        self.files = 0
        self.error: str | None = None
        self.ready = threading.Event()
        if builder is None:
            self.files = _count(self.data)
            self.ready.set()

    def settle(self, host: str) -> None:
        """`host`'s prepare ended: if it was the builder and built nothing, the hosts
        waiting for its build stop waiting."""
        if host == self.builder and not self.ready.is_set():
            self.error = f"{host}, which builds this release's assets, failed before it did"
            self.ready.set()

    def built(self, r) -> str:
        """The builder's step, after its precompile: public/assets read back, checked,
        repacked and kept."""
        rel = self.d.paths.release(self.d.release)
        try:
            out = remote.sh(r.conn, as_deploy_user(
                self.d, f"cd {rel}/public && tar -czf - assets | base64 -w0"), sudo=True,
                step="assets", timeout=600).stdout
            self.data, self.files = repack(base64.b64decode(out), r.name)
        except (RailsfabError, ValueError) as exc:
            self.error = f"{r.name}'s assets could not be read back: {exc}"
            self.ready.set()
            raise RailsfabError(self.error, host=r.name, step="assets") from None
        _keep(self.kept, self.data)
        self.ready.set()
        return (f"assets:precompile, once for the release: {self.files} files "
                f"({len(self.data) // 1024} KiB) kept for the other hosts")

    def receive(self, r) -> str:
        """Another host's step: the one build unpacked into its new release."""
        if not self.ready.wait(WAIT):
            raise RailsfabError(f"{self.builder}'s assets build did not finish in {WAIT} s",
                                host=r.name, step="assets")
        if self.data is None:
            raise RailsfabError(self.error or "the assets build failed", host=r.name,
                                step="assets", fix=f"see {self.builder}'s assets step above")
        rel = self.d.paths.release(self.d.release)
        remote.sh(r.conn, as_deploy_user(
            self.d, f"umask 022 && mkdir -p {rel}/public && cd {rel}/public && rm -rf assets "
            f"&& tar -xzf - && {open_public(rel)}"), sudo=True, step="assets",
            stdin=self.data, timeout=600)
        source = f"{self.builder}'s build" if self.builder else "the build kept for these inputs"
        return f"{self.files} files from {source}: no precompile here"


def arrange(d: Desired, plans: dict[str, dict], cache: Path) -> Shared | None:
    """Rewrite the prepare plans so that at most one host precompiles (none when this
    release's assets were built before): the Shared build they meet at, or None when no
    host precompiles."""
    needs = [n for n, p in plans.items() if isinstance(p["prepare"].get("assets"), Change)]
    if not needs:
        return None
    kept = cache / f"{d.digests.assets}.tar.gz"
    builder = None if kept.is_file() else needs[0]
    shared = Shared(d, kept, builder)
    for n in needs:
        prepare = plans[n]["prepare"]
        at = next(i for i, p in enumerate(prepare.steps) if p.step == "assets")
        o = prepare.steps[at].outcome
        if n == builder:
            new = dataclasses.replace(o, what=f"{o.what} (once: the other hosts receive it)",
                                      run=shared.built)
        else:
            source = f"{builder}'s build" if builder else f"the build kept in {kept.parent}"
            new = Change(f"unpack the assets from {source} (no precompile here)",
                         disturbs=False, run=shared.receive)
        prepare.steps[at] = Planned("assets", new)
    return shared


def repack(data: bytes, host: str) -> tuple[bytes, int]:
    """The builder's archive as railsfab ships it: only folders and regular files under
    assets/, plain names, bounded size; anything else refuses the build (it came from a
    host, where the app's code ran)."""
    out, files, total = io.BytesIO(), 0, 0
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as src, \
            tarfile.open(fileobj=out, mode="w:gz", compresslevel=6) as dst:
        for m in src:
            name = m.name.rstrip("/")
            parts = name.split("/")
            if parts[0] != "assets" or ".." in parts or "" in parts or not name.isprintable():
                raise ValueError(f"{host}'s public/assets has {name!r}: not a plain path")
            if not (m.isdir() or m.isfile()):
                raise ValueError(f"{host}'s public/assets has {name!r}, which is not a file "
                                 "or folder (railsfab ships regular files only)")
            total += m.size
            if total > LIMIT:
                raise ValueError(f"{host}'s public/assets is over {LIMIT >> 20} MiB")
            info = tarfile.TarInfo(name)
            info.mtime = m.mtime
            if m.isdir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                dst.addfile(info)
            else:
                info.size, info.mode = m.size, 0o644
                dst.addfile(info, src.extractfile(m))
                files += 1
    return out.getvalue(), files


def _count(data: bytes) -> int:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as t:
        return sum(1 for m in t if m.isfile())


def _keep(kept: Path, data: bytes) -> None:
    kept.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = kept.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, kept)
    old = sorted(kept.parent.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime, reverse=True)
    for p in old[KEEP:]:
        p.unlink(missing_ok=True)
