"""The local app source: one archive to upload, and the hashes that decide what to rebuild."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from railsfab.errors import ConfigError

# Never shipped: VCS data, local logs/caches, build output the host makes itself, secrets.
EXCLUDE_TOP = {".git", "log", "tmp", "node_modules", "storage", ".bundle", "coverage",
               ".railsfab"}
EXCLUDE_PATHS = {"public/assets", "config/master.key", "public/packs"}
EXCLUDE_NAMES = {".DS_Store", "__pycache__"}

GEM_INPUTS = ("Gemfile", "Gemfile.lock")
ASSET_INPUTS = ("app/assets/", "lib/assets/", "vendor/assets/", "app/javascript/",
                "Gemfile", "Gemfile.lock", "config/initializers/assets.rb",
                "config/application.rb", "config/environments/", "package.json",
                "yarn.lock")
MIGRATION_INPUTS = ("db/migrate/", "db/schema.rb", "db/structure.sql")


@dataclass(frozen=True)
class FileEntry:
    rel: str
    path: Path
    executable: bool
    digest: str


class Source:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._archive: bytes | None = None
        self._archive_lock = threading.Lock()
        if not (root / "config.ru").is_file() or not (root / "Gemfile").is_file():
            raise ConfigError(f"{root}: not a Rails app (no config.ru or Gemfile)",
                              fix="point app.source in hosts.yaml at your Rails app's folder")

    @cached_property
    def files(self) -> list[FileEntry]:
        entries = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir + "/"
            dirnames[:] = sorted(
                d for d in dirnames
                if not (rel_dir == "" and d in EXCLUDE_TOP)
                and f"{rel_dir}{d}" not in EXCLUDE_PATHS and d not in EXCLUDE_NAMES
            )
            for name in sorted(filenames):
                rel = rel_dir + name
                if name in EXCLUDE_NAMES or rel in EXCLUDE_PATHS:
                    continue
                path = Path(dirpath) / name
                if path.is_symlink() or not path.is_file():
                    continue
                data = path.read_bytes()
                entries.append(FileEntry(rel, path, os.access(path, os.X_OK),
                                         hashlib.sha256(data).hexdigest()))
        return entries

    def _digest(self, prefixes: tuple[str, ...] | None) -> str:
        h = hashlib.sha256()
        for e in self.files:
            if prefixes is None or any(e.rel == p or (p.endswith("/") and e.rel.startswith(p))
                                       for p in prefixes):
                h.update(f"{e.rel}\0{int(e.executable)}\0{e.digest}\n".encode())
        return h.hexdigest()

    @cached_property
    def digest(self) -> str:
        return self._digest(None)

    @cached_property
    def gems_digest(self) -> str:
        return self._digest(GEM_INPUTS)

    @cached_property
    def assets_digest(self) -> str:
        return self._digest(ASSET_INPUTS)

    @cached_property
    def migrations_digest(self) -> str:
        return self._digest(MIGRATION_INPUTS)

    def archive(self) -> bytes:
        """One gzip'd tar of the release (gzip level 1: the link, not the CPU, is the limit),
        built once however many hosts ask for it."""
        with self._archive_lock:
            if self._archive is None:
                self._archive = self._build_archive()
            return self._archive

    def _build_archive(self) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
            for e in self.files:
                info = tarfile.TarInfo(e.rel)
                data = e.path.read_bytes()
                info.size = len(data)
                info.mode = 0o755 if e.executable else 0o644
                info.mtime = int(e.path.stat().st_mtime)
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()
