"""A page that answers with nothing a user can see is no healthy app: 204, an empty 2xx, or
406 because Rails found no template; the fix follows from why (the app's user may not list
the views folder, or the template is not there)."""

from __future__ import annotations

import copy

from railsfab.diagnose import evaluate, first_broken
from tests.unit.test_diagnose import HEALTHY, PATHS

VIEWS = "/srv/sample/releases/20261206000000/app/views/photos"


def verdict(mutate):
    d = copy.deepcopy(HEALTHY)
    mutate(d)
    return first_broken(evaluate(d, workers=2, app_user="deploy", paths=PATHS))


def no_template(access: dict, templates: list[str]):
    def mutate(d):
        d["http"]["root"] = {"code": "406", "body": ""}
        d["template"] = {"controller": "Photos", "action": "index", "views": VIEWS,
                         "access": access, "templates": templates}
    return mutate


def test_views_the_app_may_not_list_are_named_with_the_mode_that_undoes_it():
    denied = {"ok": False, "path": VIEWS, "lacks": "rx", "user": "sample",
              "groups": ["deploy", "sample"], "owner": "deploy", "group": "deploy",
              "mode": "0700"}
    v = verdict(no_template(denied, ["index.html.erb"]))
    assert v.layer == "Rails app"
    assert v.detail.startswith("/ answers 406 with no page: users see a blank page; the app "
                               "logged no template for PhotosController#index: "
                               f"{VIEWS} is deploy:deploy 0700: sample may not ")
    assert v.fix == f"sudo chmod g+rx {VIEWS} (as railsfab leaves a release)"


def test_a_template_missing_from_the_release_is_named_with_where_it_belongs():
    v = verdict(no_template({"ok": True}, []))
    assert v.detail.endswith(f"{VIEWS} has no index.* template")
    assert v.fix == "add app/views/photos/index.html.erb to the app, then fab deploy"


def test_an_empty_200_is_a_blank_page_even_without_evidence():
    def empty(d):
        d["http"]["root"] = {"code": "200", "body": "  \n"}
    v = verdict(empty)
    assert v.layer == "Rails app" and v.detail == ("/ answers 200 with no page: users see a "
                                                   "blank page")
    assert v.fix == ""  # the evidence names nothing to undo
