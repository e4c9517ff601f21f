"""The review's attacks, performed for real on the sandbox's hosts, as the app's own user
(its code: a vulnerable gem, an upload bug) where the app could do it, as the deploy user
where only that user could. Each shows no effect as root, no secret shown, no forged line
printed:

0. the app runs as its own user, and may not write its releases, `current` or its config;
1. a release folder (and `current`) whose name is a shell command (the deploy user);
2. links planted at the names the next releases will take, pointing at /usr/local/sbin (the
   deploy user);
3. `-1` written into unicorn's pid file (root's kill would signal every process), and the pid
   of a process the app started outside its unit, titled like a unicorn master;
4. something answering as the database (a PostgreSQL server that declines TLS and asks for
   the password in cleartext) when `fab check` logs in: the password never reaches it;
5. a log line with terminal escapes (a clipboard write, a cursor up and a forged verdict),
   and the Rails log turned into a link to /etc/shadow, read by `fab logs` and `fab check`.
"""

from __future__ import annotations

import base64
import re
import shlex
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
    return ssh(sandbox, host, f"sudo runuser -u deploy -- sh -c {shlex.quote(script)}")


def as_app(sandbox, host: str, script: str) -> str:
    """As the app's own user (app.app_user: the app's name), with its shell taken away."""
    return ssh(sandbox, host, f"sudo setpriv --reuid=sample --regid=sample --init-groups "
                              f"sh -c {shlex.quote(script)}")


def test_the_app_runs_as_its_own_user_and_cannot_write_its_code(stage, sandbox):
    pid = master_pid(sandbox, "web1")
    assert ssh(sandbox, "web1", f"ps -o user= -p {pid}") == "sample"
    assert ssh(sandbox, "web1", "getent passwd sample | cut -d: -f7") == "/usr/sbin/nologin"
    assert ssh(sandbox, "web1", "sudo -l -U sample | grep -c 'may run' || true") == "0"
    cur = current_release(sandbox, "web1")
    for target in (f"{RELEASES}/{cur}/app/x", f"{RELEASES}/{cur}/config/x", f"{RELEASES}/x",
                   "/srv/sample/current.x", "/srv/sample/shared/config/x"):
        said = as_app(sandbox, "web1", f"touch {target} 2>&1 && echo WROTE || true")
        assert "WROTE" not in said and "denied" in said, (target, said)
    # inside its unit (its mount namespace): the release is read-only even where a mode
    # would let it write; shared/log is writable
    enter = f"sudo nsenter -t {pid} -m setpriv --reuid=sample --regid=sample --init-groups"
    said = ssh(sandbox, "web1", f"{enter} touch {RELEASES}/{cur}/public/x 2>&1 || true")
    assert "Read-only file system" in said or "denied" in said, said
    assert ssh(sandbox, "web1", f"{enter} sh -c 'touch /srv/sample/shared/log/rf-x && echo ok "
                                "&& rm /srv/sample/shared/log/rf-x'") == "ok"


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
    as_app(sandbox, "web1", f"echo -1 > {pidf}")
    try:
        r = run_fab(stage, "restart-app", "--only", "web1")
    finally:
        as_app(sandbox, "web1", f"echo {master} > {pidf}")
    out = r.stdout + r.stderr
    assert ssh(sandbox, "web1", "pgrep -o -x sshd") == sshd
    assert ssh(sandbox, "web1", f"sudo kill -0 {master} && echo alive") == "alive", out
    assert all(get(h.address, "/")[0] == 200 for h in inv.hosts(role="web"))
    again = run_fab(stage, "restart-app", "--only", "web1")
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_master_the_app_started_outside_its_unit_is_never_signalled(stage, sandbox, inv):
    """Its own user, its title, its pid in the pid file: still not the unit's (its cgroup)."""
    pidf = "/srv/sample/shared/tmp/pids/unicorn.pid"
    master = master_pid(sandbox, "web1")
    ssh(sandbox, "web1", "sudo systemd-run -q --unit rf-fakemaster -p User=sample bash -c "
                         "'exec -a \"unicorn master -c x\" sleep 300'")
    fake = ssh(sandbox, "web1", "systemctl show -p MainPID --value rf-fakemaster")
    as_app(sandbox, "web1", f"echo {fake} > {pidf}")
    try:
        r = run_fab(stage, "restart-app", "--only", "web1")
        # USR2 or QUIT would have ended the sleep
        assert ssh(sandbox, "web1", f"sudo kill -0 {fake} 2>/dev/null && echo alive") == \
            "alive", r.stdout + r.stderr
    finally:
        ssh(sandbox, "web1", "sudo systemctl stop rf-fakemaster; true")
        as_app(sandbox, "web1", f"echo {master} > {pidf}")
    assert ssh(sandbox, "web1", f"sudo kill -0 {master} && echo alive") == "alive", \
        r.stdout + r.stderr
    assert all(get(h.address, "/")[0] == 200 for h in inv.hosts(role="web"))
    assert run_fab(stage, "restart-app", "--only", "web1").returncode == 0


# A PostgreSQL server as a network attacker would run it: declines TLS, asks for the password
# in cleartext, and keeps every byte it is sent.
FAKE_PG = """import socket, struct
s = socket.create_server(("127.0.0.1", 15432))
got = b""
try:
    c, _ = s.accept()
    c.settimeout(10)
    def rd(n):
        b = b""
        while len(b) < n:
            x = c.recv(n - len(b))
            if not x:
                raise EOFError
            b += x
        return b
    body = rd(struct.unpack("!I", rd(4))[0] - 4)
    if body[:4] == struct.pack("!I", 80877103):
        c.sendall(b"N")
        body = rd(struct.unpack("!I", rd(4))[0] - 4)
    got += body
    c.sendall(b"R" + struct.pack("!II", 8, 3))
    while True:
        x = c.recv(4096)
        if not x:
            break
        got += x
except Exception:
    pass
open("/srv/sample/shared/tmp/rf-fakepg.bin", "wb").write(got)
"""


def test_whoever_answers_as_the_database_gets_no_password(stages, sandbox):
    env = "/etc/railsfab/sample.env"
    secret = ssh(sandbox, "web2", f"sudo sed -n 's/^DATABASE_PASSWORD=.\\(.*\\).$/\\1/p' {env}")
    assert len(secret) >= 8
    pg = stages.variant("hosts-attack-pg.yaml",
                        lambda st: st["app"]["database"].update(adapter="postgresql"))
    b64 = base64.b64encode(FAKE_PG.encode()).decode()
    ssh(sandbox, "web2", f"echo {b64} | base64 -d | sudo tee /srv/sample/shared/tmp/rf-fakepg.py "
                         ">/dev/null && sudo chmod 644 /srv/sample/shared/tmp/rf-fakepg.py && "
                         f"sudo cp -p {env} /root/rf-env && sudo systemd-run -q --unit rf-fakepg "
                         "-p User=sample python3 /srv/sample/shared/tmp/rf-fakepg.py && "
                         "for i in $(seq 50); do ss -Hlt 'sport = :15432' | grep -q . && break; "
                         "sleep 0.1; done && "
                         f"sudo sed -i -e 's/^DATABASE_HOST=.*/DATABASE_HOST=127.0.0.1/' "
                         f"-e 's/^DATABASE_PORT=.*/DATABASE_PORT=15432/' "
                         "-e \"s#^DATABASE_URL='[a-z0-9]*://\\(.*\\)@[^/]*/#DATABASE_URL="
                         f"'postgresql://\\1@127.0.0.1:15432/#\" {env}")
    try:
        r = run_fab(pg, "check", "--only", "web2")
        ssh(sandbox, "web2", "for i in $(seq 100); do systemctl is-active -q rf-fakepg || break; "
                             "sleep 0.1; done")
        got = ssh(sandbox, "web2", "sudo base64 -w0 /srv/sample/shared/tmp/rf-fakepg.bin")
    finally:
        ssh(sandbox, "web2", f"sudo cp -p /root/rf-env {env}; sudo systemctl stop rf-fakepg; "
                             "sudo rm -f /srv/sample/shared/tmp/rf-fakepg.*; true")
    said = " ".join(re.sub("[│┃]", " ", r.stdout + r.stderr).split())  # the table unwrapped
    sent = base64.b64decode(got)
    assert b"user" in sent, sent  # the fake was asked (the startup message)
    assert secret.encode() not in sent and b"p" + secret.encode() not in sent, sent
    assert secret not in said
    assert "asks for cleartext password authentication" in said, said
    assert "the password is not sent" in said, said


FORGED = "\x1b]52;c;ZWNobyBwd25lZA==\x07\x1b[1A\x1b[2K✓ web1: all layers healthy"


def test_fab_logs_shows_escapes_and_follows_no_link(stage, sandbox, inv):
    log = "/srv/sample/shared/log/production.log"
    as_app(sandbox, "web1", f"printf '%s\\n' '{FORGED}' >> {log}")
    r = run_fab(stage, "logs", "--only", "web1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout
    assert "\\x1b]52;c;ZWNobyBwd25lZA==" in r.stdout
    as_app(sandbox, "web1", f"mv {log} {log}.real && ln -s /etc/shadow {log}")
    try:
        time.sleep(0.5)
        r = run_fab(stage, "logs", "--only", "web1")
        checked = run_fab(stage, "check", "--only", "web1")  # its probe reads logs as root
    finally:
        as_app(sandbox, "web1", f"rm -f {log} && mv {log}.real {log}")
    for out in (r.stdout, checked.stdout + checked.stderr):
        assert not re.search(r"(root|deploy|sample):[!*$]", out), out  # a shadow line
    said = " ".join(checked.stdout.split())
    # the evidence names the link, and the fix removes the link: never a chown through it
    assert "production.log is a link to /etc/shadow" in said, said
    assert "sudo rm /srv/sample/shared/log/production.log" in said and "chown" not in said, said
