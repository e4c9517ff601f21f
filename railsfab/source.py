"""The local app source: one archive to upload, and the hashes that decide what to rebuild.

What ships, like git would: in a git checkout, the files git tracks at `app.ref` (default
HEAD: committed content, never untracked or ignored files); in a plain folder, every file
its .gitignore files do not exclude. Either way, secrets never ship (config/master.key,
config/credentials/*.key, .env*: the env file on the host carries what the app needs), nor
what the host makes itself (log/, tmp/, public/assets ...); `left_out` names the secrets
that were there, and `uncommitted` the changes a git source does not ship.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import os
import re
import subprocess
import tarfile
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pathspec

from railsfab.errors import ConfigError

# Never shipped: VCS data, local logs/caches, build output the host makes itself.
EXCLUDE_TOP = {".git", "log", "tmp", "node_modules", "storage", ".bundle", "coverage",
               ".railsfab"}
EXCLUDE_PATHS = {"public/assets", "public/packs"}
EXCLUDE_NAMES = {".DS_Store", "__pycache__"}
# Secrets: never shipped, whatever git or .gitignore say; named in the deploy's output.
SECRETS = ("config/master.key", "config/credentials/*.key", ".env*", "*/.env*")

GEM_INPUTS = ("Gemfile", "Gemfile.lock", "vendor/cache/")
ASSET_INPUTS = ("app/assets/", "lib/assets/", "vendor/assets/", "app/javascript/",
                "Gemfile", "Gemfile.lock", "config/initializers/assets.rb",
                "config/application.rb", "config/environments/", "package.json",
                "yarn.lock", "package-lock.json", "esbuild.config.", "postcss.config.",
                "tailwind.config.", "bun.config.")
MIGRATION_INPUTS = ("db/migrate/", "db/schema.rb", "db/structure.sql")
# Gems that give an app `assets:precompile` (Rails < 7 apps get sprockets-rails from "rails",
# and have app/assets/config/manifest.js).
PIPELINE = re.compile(r"""^\s*(gem\s+["']|\s{4})(sprockets-rails|propshaft|jsbundling-rails|"""
                      r"""cssbundling-rails|dartsass-rails|tailwindcss-rails)\b""", re.M)


@dataclass(frozen=True)
class FileEntry:
    rel: str
    executable: bool
    data: bytes
    mtime: int  # the file's (a git source: its commit's time)

    @cached_property
    def digest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def is_secret(rel: str) -> bool:
    return any(fnmatch.fnmatchcase(rel, p) for p in SECRETS)


def shipped_path(rel: str) -> bool:
    """Not a runtime folder, build output or OS clutter (secrets are checked apart)."""
    parts = rel.split("/")
    return not (parts[0] in EXCLUDE_TOP or any(rel == p or rel.startswith(p + "/")
                                               for p in EXCLUDE_PATHS)
                or any(p in EXCLUDE_NAMES for p in parts))


class Source:
    def __init__(self, root: Path, ref: str | None = None, linked: tuple[str, ...] = ()) -> None:
        self.root = root
        self.ref = ref
        self.linked = linked  # app.linked_files: the hosts' own, never shipped
        self.left_out: list[str] = []  # secrets found and not shipped
        self.uncommitted: list[str] = []  # a git source's changes that do not ship
        self._archive: bytes | None = None
        self._archive_lock = threading.Lock()
        if not (root / "config.ru").is_file() or not (root / "Gemfile").is_file():
            raise ConfigError(f"{root}: not a Rails app (no config.ru or Gemfile)",
                              fix="point app.source in hosts.yaml at your Rails app's folder")
        self.git = _git_top(root)
        if ref and not self.git:
            raise ConfigError(f"app.ref is {ref!r} but {root} is not in a git checkout",
                              fix="remove app.ref, or point app.source at a git checkout")

    @property
    def origin(self) -> str:
        """Where the files come from, for the output."""
        if self.git:
            return f"git {self.ref or 'HEAD'} ({self._commit[:12]})"
        return "folder (.gitignore applied)"

    @cached_property
    def _commit(self) -> str:
        return _git(self.git, "rev-parse", "--verify", f"{self.ref or 'HEAD'}^{{commit}}"
                    ).decode().strip()

    @cached_property
    def files(self) -> list[FileEntry]:
        entries = self._from_git() if self.git else self._from_folder()
        return sorted(entries, key=lambda e: e.rel)

    def _keep(self, rel: str) -> bool:
        if rel in self.linked:
            return False
        if is_secret(rel):
            self.left_out.append(rel)
            return False
        return shipped_path(rel)

    def _from_git(self) -> list[FileEntry]:
        prefix = os.path.relpath(self.root.resolve(), self.git)
        prefix = "" if prefix == "." else prefix + "/"
        listing = _git(self.git, "ls-tree", "-r", "-z", "--full-tree", self._commit,
                       "--", prefix or ".")
        wanted = []
        for item in listing.split(b"\0"):
            if not item:
                continue
            meta, _, path = item.decode().partition("\t")
            mode, kind, sha = meta.split()
            rel = path[len(prefix):]
            # files only: symlinks and submodules are not shipped
            if kind == "blob" and mode in ("100644", "100755") and self._keep(rel):
                wanted.append((rel, mode == "100755", sha))
        blobs = _cat_blobs(self.git, [sha for _, _, sha in wanted])
        when = int(_git(self.git, "show", "-s", "--format=%ct", self._commit).decode().strip())
        status = _git(self.git, "status", "--porcelain", "-z", "--", prefix or ".")
        self.uncommitted = sorted(x[3:][len(prefix):] for x in status.decode().split("\0")
                                  if len(x) > 3 and x[:2] != "??")
        return [FileEntry(rel, exe, blobs[sha], when) for rel, exe, sha in wanted]

    def _from_folder(self) -> list[FileEntry]:
        entries = []
        specs: list[tuple[str, pathspec.GitIgnoreSpec]] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir + "/"
            ignore = Path(dirpath) / ".gitignore"
            if ignore.is_file():
                specs.append((rel_dir, pathspec.GitIgnoreSpec.from_lines(
                    ignore.read_text(errors="replace").splitlines())))
            mine = [(base, spec) for base, spec in specs if rel_dir.startswith(base)]
            dirnames[:] = sorted(d for d in dirnames if shipped_path(rel_dir + d)
                                 and not _ignored(mine, rel_dir + d + "/"))
            for name in sorted(filenames):
                rel = rel_dir + name
                path = Path(dirpath) / name
                # a secret is named even when .gitignore already keeps it out
                if path.is_symlink() or not path.is_file() or not self._keep(rel) \
                        or _ignored(mine, rel):
                    continue
                entries.append(FileEntry(rel, os.access(path, os.X_OK), path.read_bytes(),
                                         int(path.stat().st_mtime)))
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
        """The Gemfile, its lock, the app's vendor/cache and its path gems' folders."""
        paths = re.findall(r"""\bpath:\s*["']([^"'#]+)["']""", self.text("Gemfile") or "")
        return self._digest(GEM_INPUTS + tuple(p.strip("./").rstrip("/") + "/"
                                               for p in paths if ".." not in p))

    @cached_property
    def assets_digest(self) -> str:
        return self._digest(ASSET_INPUTS)

    @cached_property
    def migrations_digest(self) -> str:
        return self._digest(MIGRATION_INPUTS)

    @cached_property
    def asset_pipeline(self) -> bool:
        """Does the app precompile assets (sprockets, propshaft, a bundler)?"""
        gems = (self.text("Gemfile") or "") + (self.text("Gemfile.lock") or "")
        return bool(PIPELINE.search(gems)) or self.text("app/assets/config/manifest.js") \
            is not None

    def text(self, rel: str) -> str | None:
        """A shipped file's text (None when it does not ship)."""
        e = next((e for e in self.files if e.rel == rel), None)
        return e.data.decode(errors="replace") if e else None

    def archive(self, extra: dict[str, str | bytes] | None = None) -> bytes:
        """One gzip'd tar of the release (gzip level 1: the link, not the CPU, is the limit),
        with `extra` files (what railsfab renders into a release) in place of the app's of
        the same name; built once however many hosts ask for it."""
        with self._archive_lock:
            if self._archive is None:
                self._archive = self._build_archive(extra or {})
            return self._archive

    def _build_archive(self, extra: dict[str, str | bytes]) -> bytes:
        buf = io.BytesIO()
        added = [FileEntry(rel, False, text.encode() if isinstance(text, str) else text, 0)
                 for rel, text in extra.items()]
        # Reproducible: the same files give the same bytes (gzip's header time is 0), so an
        # archive is addressed by its content (app.artifact: s3).
        with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=1, mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w") as tar:
            for e in [e for e in self.files if e.rel not in extra] + added:
                info = tarfile.TarInfo(e.rel)
                info.size = len(e.data)
                info.mode = 0o755 if e.executable else 0o644
                info.mtime = e.mtime
                tar.addfile(info, io.BytesIO(e.data))
        return buf.getvalue()


def _ignored(specs: list[tuple[str, pathspec.GitIgnoreSpec]], rel: str) -> bool:
    """gitignore semantics: the deepest .gitignore with an opinion decides."""
    verdict = False
    for base, spec in specs:
        r = spec.check_file(rel[len(base):])
        if r.include is not None:
            verdict = r.include
    return verdict


def _git(top: Path | None, *args: str) -> bytes:
    try:
        return subprocess.run(["git", "-C", str(top), *args], capture_output=True,
                              check=True).stdout
    except subprocess.CalledProcessError as exc:
        raise ConfigError(f"git {' '.join(args[:2])} in {top} failed: "
                          f"{exc.stderr.decode(errors='replace').strip()}",
                          fix="check app.ref in hosts.yaml (a branch, tag or commit)") from None


def _git_top(root: Path) -> Path | None:
    """The work tree's top when `root` is inside a git checkout (and git is installed)."""
    try:
        r = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel"],
                           capture_output=True, text=True)
    except FileNotFoundError:
        return None
    return Path(r.stdout.strip()) if r.returncode == 0 else None


def _cat_blobs(top: Path, shas: list[str]) -> dict[str, bytes]:
    """Every blob's content in one `git cat-file --batch`."""
    if not shas:
        return {}
    out = subprocess.run(["git", "-C", str(top), "cat-file", "--batch"],
                         input=("\n".join(shas) + "\n").encode(), capture_output=True,
                         check=True).stdout
    blobs, pos = {}, 0
    for _ in shas:
        header_end = out.index(b"\n", pos)
        sha, _kind, size = out[pos:header_end].decode().split()
        start = header_end + 1
        blobs[sha] = out[start:start + int(size)]
        pos = start + int(size) + 1
    return blobs
