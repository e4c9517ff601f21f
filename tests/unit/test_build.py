"""app.build: which build an app needs (package.json's scripts, its lockfile), and its output,
built here once (a fake npm on PATH) and then taken from the cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from railsfab import build
from railsfab.errors import ConfigError, RailsfabError
from railsfab.source import Source

SCRIPTS = {"build": "esbuild app/javascript/*.* --bundle --outdir=app/assets/builds",
           "build:css": "sass ./app/assets/stylesheets/application.sass.scss:"
                        "./app/assets/builds/application.css"}

FAKE_NPM = """#!/bin/sh
# a fake npm: `ci` records it ran; `run build` writes the bundle; `run build:css` the CSS
echo "$*" >> "$FAKE_LOG"
case "$1 $2" in
  "ci --prefer-offline")
    test -z "$FAIL_CI" || { echo "npm ERR! 404 Not Found - esbuild" >&2; exit 1; } ;;
  "run build")
    mkdir -p app/assets/builds && echo "console.log(1)" > app/assets/builds/application.js ;;
  "run build:css") echo "body{}" > app/assets/builds/application.css ;;
esac
"""


def app(tmp_path: Path, files: dict[str, str]) -> Source:
    root = tmp_path / "app"
    for rel, text in {"config.ru": "run Rails.application\n", "Gemfile": 'gem "rails"\n',
                      "app/javascript/application.js": "import './x'\n",
                      "app/assets/builds/.keep": "", **files}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return Source(root)


def package(scripts=SCRIPTS) -> str:
    return json.dumps({"name": "app", "private": True, "scripts": scripts,
                       "dependencies": {"esbuild": "^0.24.0", "sass": "^1.80.0"}})


def test_the_build_follows_package_json_and_its_lockfile(tmp_path):
    b = build.planned(app(tmp_path, {"package.json": package(), "package-lock.json": "{}"}),
                      "auto", "stage s of hosts.yaml")
    assert b.install == ("npm", "ci", "--prefer-offline", "--no-audit", "--no-fund")
    assert b.runs == (("npm", "run", "build"), ("npm", "run", "build:css"))
    y = build.planned(app(tmp_path / "y", {"package.json": package({"build": "x"}),
                                           "yarn.lock": ""}), "auto", "s")
    assert y.runs == (("yarnpkg", "build"),) and y.install[:2] == ("yarnpkg", "install")


@pytest.mark.parametrize("files,setting", [
    ({}, "auto"),  # importmap: no package.json, nothing to build
    ({"package.json": package({"lint": "eslint ."}), "package-lock.json": "{}"}, "auto"),
    ({"package.json": package(), "package-lock.json": "{}"}, "none"),
])
def test_no_build_when_there_is_none_to_run(tmp_path, files, setting):
    assert build.planned(app(tmp_path, files), setting, "s") is None


def test_a_build_without_a_lockfile_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="has a build script, but no package-lock.json or "
                                          "yarn.lock ships"):
        build.planned(app(tmp_path, {"package.json": package()}), "auto", "s")


@pytest.fixture()
def fake_npm(tmp_path, monkeypatch):
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "npm").write_text(FAKE_NPM)
    (bin_ / "npm").chmod(0o755)
    (bin_ / "node").write_text("#!/bin/sh\n")
    (bin_ / "node").chmod(0o755)
    log = tmp_path / "npm.log"
    monkeypatch.setenv("PATH", f"{bin_}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_LOG", str(log))
    return log


def test_the_output_is_built_once_then_taken_from_the_cache(tmp_path, fake_npm):
    src = app(tmp_path, {"package.json": package(), "package-lock.json": "{}"})
    b = build.planned(src, "auto", "s")
    cache = tmp_path / "cache"
    files = build.output(b, src, cache)
    assert files == {"app/assets/builds/application.css": b"body{}\n",
                     "app/assets/builds/application.js": b"console.log(1)\n"}
    assert fake_npm.read_text().splitlines() == [
        "ci --prefer-offline --no-audit --no-fund", "run build", "run build:css"]
    assert build.output(b, src, cache) == files  # from the cache: npm not asked again
    assert len(fake_npm.read_text().splitlines()) == 3


def test_a_failing_install_names_the_command_and_what_it_said(tmp_path, fake_npm, monkeypatch):
    monkeypatch.setenv("FAIL_CI", "1")
    src = app(tmp_path, {"package.json": package(), "package-lock.json": "{}"})
    with pytest.raises(RailsfabError) as e:
        build.output(build.planned(src, "auto", "s"), src, tmp_path / "cache")
    assert e.value.message == ("app.build: `npm ci --prefer-offline --no-audit --no-fund` "
                               "exited 1:\nnpm ERR! 404 Not Found - esbuild")
    assert e.value.fix.startswith("run `npm ci --prefer-offline --no-audit --no-fund` in ")
