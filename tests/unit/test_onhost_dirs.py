"""Root makes the app's directories without following a link the app user could plant, and
never takes over a directory that is someone else's (run here as root, in a temp folder)."""

from __future__ import annotations

import os
import pwd

import pytest

from railsfab.onhost import dirs

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
NOBODY = pwd.getpwnam("nobody")


def test_missing_directories_are_made_with_owner_and_mode(tmp_path):
    target = tmp_path / "srv/app/shared/log"
    assert dirs.ensure(str(target), "nobody", "nogroup", "0750") is None
    st = target.stat()
    assert (st.st_uid, oct(st.st_mode & 0o777)) == (NOBODY.pw_uid, "0o750")
    assert oct((tmp_path / "srv/app").stat().st_mode & 0o777) == "0o755"  # passable


def test_a_planted_link_is_not_followed(tmp_path):
    secret = tmp_path / "etc"
    secret.mkdir(mode=0o700)
    (tmp_path / "app").mkdir()
    (tmp_path / "app/shared").symlink_to(secret)  # the app user's doing
    problem = dirs.ensure(str(tmp_path / "app/shared/log"), "nobody", "nogroup", "0777")
    assert "a link or a file where a directory belongs" in problem
    assert not (secret / "log").exists()
    assert oct(secret.stat().st_mode & 0o777) == "0o700" and secret.stat().st_uid == 0
    last = dirs.ensure(str(tmp_path / "app/shared"), "nobody", "nogroup", "0777")
    assert "a link or a file" in last and secret.stat().st_uid == 0


def test_someone_elses_directory_is_not_taken_over(tmp_path):
    theirs = tmp_path / "opt/tool"
    theirs.mkdir(parents=True)
    (theirs / "data").write_text("x")  # root's, and not empty
    problem = dirs.ensure(str(theirs), "nobody", "nogroup", "0711")
    assert "does not take over" in problem and theirs.stat().st_uid == 0
    empty = tmp_path / "srv/new"
    empty.mkdir(parents=True)  # an admin made it for the app: it may be taken
    assert dirs.ensure(str(empty), "nobody", "nogroup", "0711") is None
    assert empty.stat().st_uid == NOBODY.pw_uid
