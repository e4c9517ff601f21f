"""A start that never ran the server (systemd could not load its env file, find its user or
its program): systemd's own line is the cause, not an older line of the app's logs."""

from __future__ import annotations

from railsfab.onhost.check import SYSTEMD_WHY
from tests.unit.test_blank_page import verdict
from tests.unit.test_diagnose import unicorn_stopped

JOURNAL = [
    "21:40:01 systemd[1]: Starting sample-unicorn.service - sample (unicorn)...",
    "21:40:01 systemd[1]: sample-unicorn.service: Failed to load environment files: No such "
    "file or directory",
    "21:40:01 systemd[1]: sample-unicorn.service: Failed to run 'start' task: No such file or "
    "directory",
    "21:40:01 systemd[1]: sample-unicorn.service: Failed with result 'resources'.",
]


def test_systemds_reason_is_found_in_the_units_journal():
    why = [line for line in JOURNAL if SYSTEMD_WHY.search(line)]
    assert why == [JOURNAL[1]]
    assert not SYSTEMD_WHY.search("21:40:01 ruby[123]: Failed to load environment files")


def test_a_missing_env_file_is_the_cause_with_deploy_writing_it_as_the_fix():
    def no_env_file(d):
        unicorn_stopped(d)
        d["server"]["unit"].update(ActiveState="failed", Result="resources")
        d["server"]["error"] = {"line": JOURNAL[1].split(": ", 1)[-1], "paths": [],
                                "source": "systemd (journalctl -u sample-unicorn)"}
    v = verdict(no_env_file)
    assert v.layer == "app server"
    assert ("first error since it was started (systemd (journalctl -u sample-unicorn)): "
            "sample-unicorn.service: Failed to load environment files") in v.detail
    assert v.fix == ("/etc/railsfab/sample.env is missing or unreadable: fab deploy writes it "
                     "(root, 0600) and starts sample-unicorn.service")


def test_the_units_own_starting_master_is_never_called_left_behind():
    """A master still starting (waiting on a database whose name does not resolve) holds the
    socket: it is the unit's main process, so it is named as what it is waiting on, never
    killed as a leftover."""
    from tests.unit.test_diagnose_evidence import app_server_failing, stray

    def starting(d):
        app_server_failing(d, {"line": "getaddrinfo: Name or service not known (Socket"
                                       "Error)", "source": "log", "paths": []})
        d["server"]["main_pid"] = "77"
        d["socket"]["holders"] = [stray(77, "unicorn master -D", "sample-unicorn.service",
                                        "deploy")]
    v = verdict(starting)
    assert v.layer == "app server"
    assert "left from an earlier start" not in v.fix and "held by" not in v.detail
    assert "getaddrinfo: Name or service not known" in v.detail
