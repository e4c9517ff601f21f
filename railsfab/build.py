"""app.build: the app's JavaScript/CSS build (jsbundling, cssbundling: package.json's `build`
and `build:css` scripts), run once per release on this machine, where npm's registry can be
reached, as Kamal builds in its image. What it writes into app/assets/builds/ goes into the
release archive, so the web hosts need no node; their `assets:precompile` runs with
SKIP_JS_BUILD / SKIP_CSS_BUILD (jsbundling-rails' and cssbundling-rails' own switches).

The output is kept under .railsfab/build/, addressed by the asset inputs' digest: a deploy
whose asset inputs did not change builds nothing."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from railsfab.errors import ConfigError, RailsfabError
from railsfab.source import Source

OUTPUT = "app/assets/builds/"
SCRIPTS = ("build", "build:css")
KEEP = 3  # outputs kept in the cache
# What the hosts' assets:precompile is told: the build is in the release already.
SKIP_ENV = {"SKIP_JS_BUILD": "1", "SKIP_CSS_BUILD": "1", "SKIP_YARN_INSTALL": "1",
            "SKIP_BUN_INSTALL": "1"}


@dataclass(frozen=True)
class Build:
    tool: str  # npm or yarnpkg
    install: tuple[str, ...]
    runs: tuple[tuple[str, ...], ...]
    key: str  # the asset inputs' digest: the cache's address

    @property
    def said(self) -> str:
        return " && ".join(" ".join(c) for c in (self.install, *self.runs))


def planned(source: Source, setting: str, where: str) -> Build | None:
    """The build an app needs (None: none, or app.build: none). `where`: hosts.yaml's
    stage path, for the fix."""
    if setting == "none":
        return None
    text = source.text("package.json")
    if text is None:
        return None
    try:
        scripts = json.loads(text).get("scripts") or {}
    except (ValueError, AttributeError):
        raise ConfigError(f"{source.root}/package.json is not valid JSON",
                          fix="fix package.json (or set app.build: none)") from None
    wanted = [s for s in SCRIPTS if s in scripts]
    if not wanted:
        return None
    if source.text("package-lock.json") is not None:
        tool, install = "npm", ("npm", "ci", "--prefer-offline", "--no-audit", "--no-fund")
    elif source.text("yarn.lock") is not None:
        tool, install = "yarnpkg", ("yarnpkg", "install", "--frozen-lockfile", "--non-interactive")
    else:
        raise ConfigError(
            f"{source.root}/package.json has a {wanted[0]} script, but no package-lock.json or "
            "yarn.lock ships: the build would take whatever versions are newest",
            fix=f"commit the lockfile npm or yarn wrote (or set app.build: none in {where})")
    runs = tuple((tool, "run", s) if tool == "npm" else (tool, s) for s in wanted)
    return Build(tool, install, runs, source.assets_digest)


def _check_tools(b: Build) -> None:
    missing = [t for t in ("node", b.tool) if shutil.which(t) is None]
    if missing:
        raise ConfigError(
            f"app.build needs {' and '.join(missing)} on this machine (the build runs here, "
            "not on the hosts)",
            fix="apt-get install nodejs npm yarnpkg (scripts/setup does), or set app.build: none "
                "and commit app/assets/builds/")


def kept(b: Build, cache: Path) -> Path:
    """Where the build's output for these asset inputs is kept."""
    return cache / f"{b.key}.tar"


def output(b: Build, source: Source, cache: Path, *, offline: bool = False) -> dict[str, bytes]:
    """The build's files (release-relative paths), from the cache or built now."""
    kept_at = kept(b, cache)
    if kept_at.is_file():
        return _read(kept_at)
    _check_tools(b)
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.TemporaryDirectory(prefix="build-", dir=cache) as tmp:
        work = Path(tmp)
        for e in source.files:
            dest = work / e.rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(e.data)
        # npm's and yarn's own caches (the user's): packages are fetched once per machine.
        # `offline`: a sandbox stage, whose packages scripts/setup fetched; nothing else.
        env = {**os.environ, **({"npm_config_offline": "true", "YARN_OFFLINE": "true"}
                                if offline else {})}
        for cmd in (b.install, *b.runs):
            _run(cmd, work, env, source)
        files = {str(p.relative_to(work)): p.read_bytes()
                 for p in sorted((work / OUTPUT).rglob("*")) if p.is_file()
                 and p.name != ".keep"}
    if not files:
        raise RailsfabError(f"app.build: {b.said} wrote nothing into {OUTPUT}", step="build",
                            state="nothing was changed",
                            fix=f"make the build scripts write their output to {OUTPUT} (as "
                                "jsbundling-rails and cssbundling-rails set them up)")
    _write(kept_at, files)
    _prune(cache)
    return files


def _run(cmd: tuple[str, ...], cwd: Path, env: dict, source: Source) -> None:
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        raise RailsfabError(f"app.build: `{' '.join(cmd)}` did not finish in 900 s",
                            step="build", state="nothing was changed",
                            fix=f"run it in {source.root} and see where it waits") from None
    if p.returncode != 0:
        said = p.stderr.strip() or p.stdout.strip()
        tail = "\n".join(said.splitlines()[-8:])
        fix = (f"run `{' '.join(cmd)}` in {source.root}, fix what it says, commit, deploy "
               "again")
        if "ENOTCACHED" in said or "offline mode" in said:
            fix = (f"a sandbox stage builds offline, from npm's cache on this machine: fetch "
                   f"the packages once (`npm ci` in {source.root}, or scripts/setup for the "
                   "examples), then deploy again")
        raise RailsfabError(f"app.build: `{' '.join(cmd)}` exited {p.returncode}:\n{tail}",
                            step="build", state="nothing was changed", fix=fix)


def _write(path: Path, files: dict[str, bytes]) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for rel, data in files.items():
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)


def _read(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()
                and m.name.startswith(OUTPUT) and ".." not in m.name.split("/")}


def _prune(cache: Path) -> None:
    outputs = sorted(cache.glob("*.tar"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in outputs[KEEP:]:
        old.unlink(missing_ok=True)
