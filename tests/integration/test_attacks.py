"""The review's attacks, performed for real as the deploy user (the app's code runs as that
user: a vulnerable gem, an upload bug) on the sandbox's hosts. Each shows no effect as root,
no secret shown, no forged line printed:

1. a release folder (and `current`) whose name is a shell command;
2. links planted at the names the next releases will take, pointing at /usr/local/sbin;
3. `-1` written into unicorn's pid file (root's kill would signal every process);
5. a log line with terminal escapes (a clipboard write, a cursor up and a forged verdict),
   and the Rails log turned into a link to /etc/shadow, read by `fab logs`.
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import run_fab
from tests.integration.test_deploy import current_release, get, master_pid, ssh

WEB = ("web1", "web2")
RELEASES = "/srv/sample/releases"
PWNED = "/tmp/railsfab-pwned"


@pytest.fixture(scope="module")
def stage(stages):
    return stages.unicorn()


def as_deploy(sandbox, host: str, script: str) -> str:
    import shlex

    return ssh(sandbox, host, f"sudo runuser -u deploy -- sh -c {shlex.quote(script)}")


def serving_as_before(sandbox, inv, before: dict) -> None:
    assert {h: current_release(sandbox, h) for h in WEB} == before
    assert all(get(h.address, "/")[0] == 200 for h in inv.hosts(role="web"))


def test_a_release_named_as_a_command_is_refused_not_run(stage, sandbox, inv):
    before = {h: current_release(sandbox, h) for h in WEB}
    # no "/" can be in a name: the command builds it (printf's octal 057 is "/")
    evil = r"x;touch $(printf \\057tmp\\057railsfab-pwned);#"
    as_deploy(sandbox, "web1", f"cd {RELEASES} && mkdir '{evil}' && "
                               f"cp {before['web1']}/.railsfab-release.json '{evil}/' && "
                               f"ln -sfn '{RELEASES}/{evil}' /srv/sample/current.x && "
                               "mv -T /srv/sample/current.x /srv/sample/current")
    try:
        r = run_fab(stage, "deploy")
        out = r.stdout + r.stderr
        assert r.returncode == 1, out
        assert "failed on web1, step facts" in out and "not a release railsfab made" in out
        for h in WEB:
            assert ssh(sandbox, h, f"test -e {PWNED} && echo yes || echo no") == "no", out
    finally:
        as_deploy(sandbox, "web1", f"ln -sfn {RELEASES}/{before['web1']} /srv/sample/current.x"
                                   f" && mv -T /srv/sample/current.x /srv/sample/current && "
                                   f"rm -rf '{RELEASES}/{evil}'")
    serving_as_before(sandbox, inv, before)
    again = run_fab(stage, "deploy")  # the refused run left no lock behind
    assert again.returncode == 0 and "took over the lock" not in again.stdout, again.stdout


def test_links_planted_at_the_next_release_names_steer_nothing(stage, sandbox, inv):
    """The next release's folder is made by the deploy user: a link at its name makes the
    step fail; root never re-owns or unpacks into what it points at."""
    app = inv.resolve(inv.stage.app.source)
    view = app / "app/views/photos/index.html.erb"
    good = view.read_text()
    before = {h: current_release(sandbox, h) for h in WEB}
    sbin = {h: ssh(sandbox, h, "stat -c '%U %G %a' /usr/local/sbin") for h in WEB}
    # a link for every second of the next five minutes, on both hosts
    plant = (f"now=$(date -u +%s); for i in $(seq 0 300); do "
             f"ln -s /usr/local/sbin {RELEASES}/$(date -u -d @$((now + i)) +%Y%m%d%H%M%S); "
             "done")
    for h in WEB:
        as_deploy(sandbox, h, plant)
    view.write_text(good + "\n<p>attack: planted links</p>\n")
    try:
        r = run_fab(stage, "deploy")
    finally:
        view.write_text(good)
        for h in WEB:
            as_deploy(sandbox, h, f"find {RELEASES} {RELEASES}-failed -maxdepth 1 -type l "
                                  "-delete")
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "step release" in out and "File exists" in out, out
    for h in WEB:
        assert ssh(sandbox, h, "stat -c '%U %G %a' /usr/local/sbin") == sbin[h]
        assert ssh(sandbox, h, "ls -A /usr/local/sbin") == ""
    serving_as_before(sandbox, inv, before)
    assert run_fab(stage, "deploy").returncode == 0


def test_a_pid_file_saying_minus_one_signals_nothing(stage, sandbox, inv):
    """The app may write unicorn's pid file (it is in its folder): root only signals a
    unicorn master of the app's user that the file names."""
    pidf = "/srv/sample/shared/tmp/pids/unicorn.pid"
    master = master_pid(sandbox, "web1")
    sshd = ssh(sandbox, "web1", "pgrep -o -x sshd")
    as_deploy(sandbox, "web1", f"echo -1 > {pidf}")
    try:
        r = run_fab(stage, "restart-app", "--only", "web1")
    finally:
        as_deploy(sandbox, "web1", f"echo {master} > {pidf}")
    out = r.stdout + r.stderr
    assert ssh(sandbox, "web1", "pgrep -o -x sshd") == sshd
    assert ssh(sandbox, "web1", f"sudo kill -0 {master} && echo alive") == "alive", out
    assert all(get(h.address, "/")[0] == 200 for h in inv.hosts(role="web"))
    again = run_fab(stage, "restart-app", "--only", "web1")
    assert again.returncode == 0, again.stdout + again.stderr


FORGED = "\x1b]52;c;ZWNobyBwd25lZA==\x07\x1b[1A\x1b[2K✓ web1: all layers healthy"


def test_fab_logs_shows_escapes_and_follows_no_link(stage, sandbox, inv):
    log = "/srv/sample/shared/log/production.log"
    as_deploy(sandbox, "web1", f"printf '%s\\n' '{FORGED}' >> {log}")
    r = run_fab(stage, "logs", "--only", "web1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout
    assert "\\x1b]52;c;ZWNobyBwd25lZA==" in r.stdout
    as_deploy(sandbox, "web1", f"mv {log} {log}.real && ln -s /etc/shadow {log}")
    try:
        time.sleep(0.5)
        r = run_fab(stage, "logs", "--only", "web1")
    finally:
        as_deploy(sandbox, "web1", f"rm -f {log} && mv {log}.real {log}")
    assert "root:" not in r.stdout and "deploy:" not in r.stdout, r.stdout
