"""fab check's database layer: the settings the release uses (asked of its own Ruby), a user
that may only read, and what the layer says of where its settings came from."""

from __future__ import annotations

import copy

from railsfab.diagnose import evaluate, first_broken
from railsfab.onhost import check_db
from tests.unit.test_diagnose import HEALTHY, PATHS


def verdicts(mutate):
    d = copy.deepcopy(HEALTHY)
    mutate(d)
    return evaluate(d, workers=2, app_user="deploy", paths=PATHS)


def test_a_user_that_may_only_read_is_a_failure_with_the_grant_that_undoes_it():
    def read_only(d):
        d["db"].update(where="sample@10.0.0.5:3306/sample_production", adapter="mysql2",
                       privileges={"missing": ["(the database): INSERT", "(the database): "
                                               "UPDATE", "(the database): DELETE"]})
    v = first_broken(verdicts(read_only))
    assert v.layer == "database"
    assert v.detail == ("the app's database user sample may not write the app's data "
                        "(sample@10.0.0.5:3306/sample_production): lacks (the database): "
                        "INSERT; (the database): UPDATE; (the database): DELETE")
    assert v.fix.startswith("as an admin: GRANT SELECT, INSERT, UPDATE, DELETE ON "
                            "`sample_production`.* TO 'sample'@'%';")

    def pg_read_only(d):
        read_only(d)
        d["db"].update(adapter="postgresql", where="shop@db:5432/shop",
                       privileges={"missing": ["pins: INSERT,UPDATE,DELETE"]})
    v = first_broken(verdicts(pg_read_only))
    assert v.detail.endswith("lacks pins: INSERT,UPDATE,DELETE")
    assert v.fix.startswith("as the database's owner: GRANT SELECT, INSERT, UPDATE, DELETE ON "
                            "ALL TABLES IN SCHEMA public TO shop;")


def test_the_healthy_line_says_where_the_settings_came_from():
    def from_url(d):
        d["db"]["source"] = "DATABASE_URL (over config/database.yml)"
    v = [x for x in verdicts(from_url) if x.layer == "database"][0]
    assert v.status == "ok"
    assert v.detail.endswith(", as DATABASE_URL (over config/database.yml) says")

    def fell_back(d):
        d["db"]["config_error"] = "no production database in config/database.yml"
    v = [x for x in verdicts(fell_back) if x.layer == "database"][0]
    assert v.status == "ok"
    assert v.detail.endswith("from the env file (the release's own settings could not be read: "
                             "no production database in config/database.yml)")


def test_without_the_apps_ruby_the_env_files_names_are_used_and_the_reason_kept(tmp_path,
                                                                              monkeypatch):
    seen = {}

    def login(adapter, host, port, user, password, database, after=None):
        seen.update(adapter=adapter, host=host, port=port, user=user, database=database)
        return {"ok": True, "server": "x", "ms": 1}
    monkeypatch.setattr(check_db, "login", login, raising=False)
    P = {"app_user": "nobody-such-user", "current": str(tmp_path), "dbconfig_rb": "puts 1",
         "adapter": "postgresql"}
    env = {"DATABASE_HOST": "db.internal", "DATABASE_NAME": "shop", "DATABASE_USERNAME": "shop",
           "DATABASE_PASSWORD": "pw", "RAILS_ENV": "production"}
    got = check_db.database(P, env)
    assert seen == {"adapter": "postgresql", "host": "db.internal", "port": 5432, "user": "shop",
                    "database": "shop"}
    assert got["source"] == "the env file's DATABASE_*" and got["config_error"]
    assert check_db.database(P, {"RAILS_ENV": "production"}) is None
