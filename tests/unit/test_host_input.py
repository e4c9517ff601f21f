"""What the facts read back from a host is the deploy user's to write (release folders,
`current`, ledgers): release names of another shape than railsfab's are refused naming them,
before any of it reaches a command; ledgers keep only the keys and shapes railsfab writes."""

from __future__ import annotations

import pytest

from railsfab.errors import RailsfabError
from railsfab.facts import checked, ledger
from railsfab.paths import Paths

PATHS = Paths("shop", "/srv/shop")
GOOD = "20261206120000"
DIGEST = "ab" * 32

HOSTILE_IDS = [
    "x;printf 'id>/tmp/PWNED'|sh;#",
    "$(touch /tmp/PWNED)",
    "`id`",
    "../../usr/local/sbin",
    "20261206120000 ",
    "2026120612000",  # 13 digits
    "202612061200000",  # 15
    "-rf",
    "\x1b]52;c;Zm9v\x07",
    "20261206120000\n",
    "",
    "current",
]


@pytest.mark.parametrize("name", HOSTILE_IDS)
def test_a_release_folder_of_another_name_is_refused_naming_it(name):
    raw = {"releases": {GOOD: {}, name: {"id": GOOD, "state": "good"}}, "current": GOOD}
    with pytest.raises(RailsfabError) as e:
        checked(raw, PATHS)
    assert e.value.step == "facts" and "/srv/shop/releases holds" in e.value.message
    assert "\x1b" not in e.value.message and "\n" not in e.value.message
    assert "not a release railsfab made" in e.value.message and "move it out" in e.value.fix


@pytest.mark.parametrize("name", HOSTILE_IDS)
def test_current_pointing_at_another_name_is_refused(name):
    with pytest.raises(RailsfabError) as e:
        checked({"releases": {GOOD: {}}, "current": name}, PATHS)
    assert "`current` points to" in e.value.message and "\x1b" not in e.value.message


def test_railsfab_names_pass_and_no_release_is_fine():
    raw = {"releases": {GOOD: {"id": GOOD, "state": "good", "source": DIGEST}}, "current": GOOD}
    assert checked(raw, PATHS)["releases"] == {GOOD: {"id": GOOD, "state": "good",
                                                      "source": DIGEST}}
    assert checked({"releases": {}, "current": None}, PATHS)["releases"] == {}


@pytest.mark.parametrize("meta, kept", [
    ({"state": "good", "gems": DIGEST}, {"state": "good", "gems": DIGEST}),
    ({"state": "good; rm -rf /"}, {}),
    ({"gems": "../x"}, {}),
    ({"gems": DIGEST.upper()}, {}),
    ({"state": ["good"]}, {}),
    ({"state": {"x": 1}}, {}),
    ({"app_server": "passenger"}, {}),
    ({"rails_env": "production$(id)"}, {}),
    ({"id": "x;id"}, {}),
    ({"extra": "anything", "state": "prepared"}, {"state": "prepared"}),
    ([1, 2], {}),
    ("good", {}),
    (None, {}),
])
def test_a_ledger_keeps_only_what_railsfab_writes(meta, kept):
    assert ledger(meta) == kept
