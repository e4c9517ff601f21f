"""A fix is only printed when it undoes what its evidence shows: every path, user and host a
fix names must be named by the evidence it follows from (tests/integration/test_check.py
checks the same faults on real hosts)."""

from __future__ import annotations

import re

import pytest

from railsfab.diagnose import first_broken
from tests.unit import test_diagnose_evidence as ev
from tests.unit.test_blank_page import no_template
from tests.unit.test_diagnose_evidence import verdicts
from tests.unit.test_fix_table import ROWS, STAGE_DB

PATH = re.compile(r"(?<![\w.:])/(?:[\w.@-]+/)*[\w.@-]+")
USER = re.compile(r"\b(?:chown|-u|-o) ([a-z_][a-z0-9_-]*)\b")
HOST = re.compile(r"--only ([\w-]+)")

DENIED = {"ok": False, "path": "/srv/sample/releases/20261206000000/app/views/photos",
          "lacks": "rx", "user": "sample", "groups": ["deploy"], "owner": "deploy",
          "group": "deploy", "mode": "0700"}
SCENARIOS = [getattr(ev, n) for n in (
    "secret_missing", "config_syntax_error", "denied_at_boot", "master_left_behind",
    "workers_stopped", "config_broken_on_disk", "duplicate_default_server",
    "other_process_on_80", "nginx_cannot_bind", "socket_taken", "log_fs_full", "inodes_out",
    "oom_killed", "oom_under_unit_limit", "release_removed", "log_dir_root_owned",
    "raised_in_a_view", "db_refuses_and_app_cannot_boot", "migration_pending")] + [
    no_template(DENIED, ["index.html.erb"]), no_template({"ok": True}, [])] + [
    row[0] for row in ROWS]


@pytest.mark.parametrize("mutate", SCENARIOS, ids=lambda m: getattr(m, "__name__", "view"))
def test_no_fix_names_a_path_user_or_host_its_evidence_does_not(mutate):
    cause = first_broken(verdicts(mutate, stage_db=STAGE_DB))
    fix, evidence = cause.fix, cause.detail
    for path in PATH.findall(fix):
        assert path in evidence or path.startswith(tuple(PATH.findall(evidence))), \
            f"{path} is in the fix, not in the evidence: {evidence!r} -> {fix!r}"
    for user in USER.findall(fix):
        assert user in evidence, f"user {user}: {evidence!r} -> {fix!r}"
    for host in HOST.findall(fix):
        assert host in evidence or host == "web2", f"host {host}: {fix!r}"
