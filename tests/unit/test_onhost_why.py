"""The probe's evidence about an error the app logged (railsfab/onhost/check_why.py): the gem
Bundler could not find, an asset its manifest lacks, a table its database lacks."""

from __future__ import annotations

import json

import pytest

from railsfab.onhost import check_why


@pytest.mark.parametrize("line, gem, version", [
    ("Could not find mini_magick-4.11.0 in locally installed gems (Bundler::GemNotFound)",
     "mini_magick", "4.11.0"),
    ("Could not find nokogiri-1.15.4-x86_64-linux in any of the sources", "nokogiri",
     "1.15.4"),
    ("Could not find gem 'sd_notify' in locally installed gems.", "sd_notify", None),
])
def test_a_gem_bundler_could_not_find_is_named_with_its_version(line, gem, version,
                                                                monkeypatch):
    monkeypatch.setattr(check_why, "_dpkg_search", lambda pattern: "")
    found = check_why.gem_evidence(line)
    assert (found["gem"], found["version"], found["package"]) == (gem, version, None)


def test_the_package_that_provides_the_gem_is_dpkgs_answer(monkeypatch):
    asked = []

    def dpkg(pattern):
        asked.append(pattern)
        return ("ruby-mini-magick: /usr/share/rubygems-integration/all/specifications/"
                "mini_magick-4.11.0.gemspec\n")
    monkeypatch.setattr(check_why, "_dpkg_search", dpkg)
    found = check_why.gem_evidence("Could not find mini_magick-4.11.0 in locally installed")
    assert (found["package"], found["provides"]) == ("ruby-mini-magick", "4.11.0")
    assert asked == ["*/specifications/mini_magick-4.11.0.gemspec*"]
    assert check_why.gem_evidence("an error of another kind") is None


def test_an_asset_the_manifest_lacks_with_the_release_s_sources(tmp_path):
    (tmp_path / "app/assets/stylesheets").mkdir(parents=True)
    (tmp_path / "app/assets/stylesheets/application.css").write_text("")
    (tmp_path / "public/assets").mkdir(parents=True)
    (tmp_path / "public/assets/.sprockets-manifest-ab.json").write_text(json.dumps({}))
    lines = ['[x] ActionView::Template::Error (The asset "application.css" is not present in '
             'the asset pipeline.']
    found = check_why.asset_evidence(str(tmp_path), lines)
    assert found == {"asset": "application.css",
                     "sources": ["app/assets/stylesheets/application.css"],
                     "manifest": "public/assets/.sprockets-manifest-ab.json"}
    other = check_why.asset_evidence(str(tmp_path), [lines[0].replace("application", "x")])
    assert other["sources"] == []
    assert check_why.asset_evidence(str(tmp_path), ["Completed 200 OK"]) is None
    # the app writes its log: a name that leaves the release or is no asset path is no evidence
    for forged in ("../../../etc/shadow", "x; rm -rf ~", "a/../b.css"):
        assert check_why.asset_evidence(
            str(tmp_path), [f'The asset "{forged}" is not present in the asset pipeline']
        ) is None


@pytest.mark.parametrize("error", [
    "Mysql2::Error: Table 'shop_production.photos' doesn't exist",
    'PG::UndefinedTable: ERROR:  relation "photos" does not exist',
])
def test_a_table_the_database_lacks_and_the_migration_that_creates_it(tmp_path, error):
    migrate = tmp_path / "db/migrate"
    migrate.mkdir(parents=True)
    (migrate / "20260101000000_create_photos.rb").write_text(
        "class CreatePhotos < ActiveRecord::Migration[7.2]\n  def change\n"
        "    create_table :photos do |t|\n    end\n  end\nend\n")
    (migrate / "20260102000000_create_photo_tags.rb").write_text("create_table :photo_tags")
    # a file Rails would not run as a migration: its name goes into no printed command
    (migrate / "9;touch x_create_photos.rb").write_text("create_table :photos\n")
    lines = [f"[x] ActionView::Template::Error ({error}):"]
    found = check_why.table_evidence(str(tmp_path), lines, {"tables": ["users"]})
    assert (found["table"], found["file"]) == ("photos", "20260101000000_create_photos.rb")
    # the database has it (another schema, a race): no evidence
    assert check_why.table_evidence(str(tmp_path), lines, {"tables": ["photos"]}) is None
    # no login, no list of tables: nothing to compare
    assert check_why.table_evidence(str(tmp_path), lines, {"tables": None}) is None


def test_a_failed_exec_start_pre_is_systemds_record_of_this_start():
    from railsfab.onhost.check import failed_pre

    failed = ("{ path=/bin/sh ; argv[]=/bin/sh -c echo no >&2; exit 3 ; ignore_errors=no ; "
              "start_time=[Mon 2026-12-07 00:44:27 UTC] ; stop_time=[Mon 2026-12-07 00:44:27 "
              "UTC] ; pid=6812 ; code=exited ; status=3 }")
    assert failed_pre(failed) == ("its ExecStartPre=/bin/sh -c echo no >&2; exit 3 exited "
                                  "with status 3")
    assert failed_pre(failed.replace("status=3", "status=0")) is None
    assert failed_pre("") is None
