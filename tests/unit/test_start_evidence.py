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
