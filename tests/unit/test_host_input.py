"""What comes back from a host is the app's or the deploy user's to write. Release folders,
`current` and ledgers: names of another shape than railsfab's are refused naming them,
before any reaches a command; ledgers keep only the keys and shapes railsfab writes. Log
lines, output and errors: shown on the terminal, never obeyed by it. Logs: read as the app's
user (a link in its log folder opens nothing)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from railsfab.console import _Printer, logs_script
from railsfab.errors import RailsfabError
from railsfab.facts import checked, ledger
from railsfab.inventory import Host
from railsfab.paths import Paths
from railsfab.report import Reporter
from railsfab.text import safe
from tests.unit.test_plans import stage

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


# Lines an app can put in its logs (or its output, or an error) to act on the operator's
# terminal: a clipboard write, a cursor up + erase line with a forged verdict, a carriage
# return, the one-byte CSI, backspaces.
HOSTILE_LINES = [
    "\x1b]52;c;ZWNobyBwd25lZA==\x07",
    "\x1b[1A\x1b[2K✓ web1: all layers healthy",
    "boom\r✓ web1: all layers healthy",
    "\x9b1A\x9b2K forged",
    "fail\x08\x08\x08\x08ok  ",
]


def written(fn) -> str:
    out = io.StringIO()
    rep = Reporter(Console(file=out, width=200, highlight=False, force_terminal=False),
                   live=False)
    fn(rep)
    return out.getvalue()


def no_control(text: str) -> bool:
    return all(c.isprintable() or c in "\n" for c in text)


@pytest.mark.parametrize("line", HOSTILE_LINES)
def test_a_hostile_line_reaches_the_terminal_shown_not_obeyed(line, capsys):
    def step(rep):
        with rep.step("web1", "verify") as s:
            s.ok(line)
    assert no_control(written(step))
    err = RailsfabError(f"verification failed\n{line}", host="web1", step="verify",
                        state=line, fix=line)
    assert no_control(written(lambda rep: rep.failure(err, "fab deploy")))
    printer = _Printer([Host(name="web1", address="198.51.100.7")])
    printer.line("web1", line)
    assert no_control(capsys.readouterr().out)
    assert safe(line) != line and "\\" in safe(line)


def test_app_logs_are_read_as_the_apps_user_nginx_logs_as_root(tmp_path, monkeypatch):
    s = stage(tmp_path, monkeypatch)
    once = logs_script(s, lines=5, follow=False)
    assert once.startswith("runuser -u shop -- tail -n 5 /srv/shop/shared/log/unicorn")
    assert "; tail -n 5 /var/log/nginx/error.log /var/log/nginx/shop.access.log" in once
    follow = logs_script(s, lines=5, follow=True)
    assert " -F " in follow and follow.endswith("& wait; true")
