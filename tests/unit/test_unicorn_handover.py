"""The PIDs unicorn_handover.sh reads from the host are untrusted: it signals only a positive
number naming a `unicorn master` of the app's user. Run here with bash, `kill` replaced by a
recorder, so a wrong answer cannot signal anything; and a whole handover of a fake unicorn,
whose polls start no process while its new master boots."""

from __future__ import annotations

import getpass
import signal
import subprocess

import pytest

from railsfab import onhost
from railsfab.appserver.unicorn import repair_note

RECORD = 'kill() { echo "kill $*" >> "$TRACE"; [ "$1" = -0 ] && command kill "$@"; }\n'
# systemd is not here: the unit's cgroup is the one this test (and its fake masters) run in,
# its MainPID the one the pid file names (as systemd's PIDFile=)
SYSTEMCTL = ('#!/bin/sh\ncase "$*" in *ControlGroup*) '
             'cut -d: -f3- /proc/self/cgroup | head -n 1 ;; *MainPID*) cat "$PIDF" ;; '
             '*) exit 1 ;; esac\n')


def fake_systemctl(tmp_path):
    bin_ = tmp_path / "bin"
    bin_.mkdir(exist_ok=True)
    if not (bin_ / "systemctl").exists():  # a test may have put its own
        (bin_ / "systemctl").write_text(SYSTEMCTL)
        (bin_ / "systemctl").chmod(0o755)
    return bin_


def handover(tmp_path, pid_text: str, oldbin: str | None = None, user: str | None = None):
    pidf = tmp_path / "unicorn.pid"
    pidf.write_text(pid_text)
    if oldbin is not None:
        (tmp_path / "unicorn.pid.oldbin").write_text(oldbin)
    log = tmp_path / "unicorn.log"
    log.write_text("")
    trace = tmp_path / "trace"
    trace.write_text("")
    bin_ = fake_systemctl(tmp_path)
    # TIMEOUT past the 1 s after which a master that forked nothing counts as died (at 1 s
    # the two raced on a loaded machine: timeout, exit 5, instead of died, exit 4)
    env = {"PATH": f"{bin_}:/usr/bin:/bin", "PIDF": str(pidf), "LOG": str(log),
           "UNIT": "railsfab-test-none.service", "WORKERS": "1", "TIMEOUT": "3",
           "CURRENT": str(tmp_path), "USER_": user or getpass.getuser(), "TRACE": str(trace)}
    r = subprocess.run(["bash", "-s"], input=RECORD + onhost.load("unicorn_handover.sh"),
                       env=env, capture_output=True, text=True, timeout=30)
    signals = [line for line in trace.read_text().splitlines() if not line.startswith("kill -0")]
    return r, signals


@pytest.fixture
def fake_process():
    """A process of ours with a given title, like unicorn's."""
    procs = []

    def start(title: str) -> str:
        p = subprocess.Popen(["bash", "-c", f'exec -a "{title}" sleep 30'])
        procs.append(p)
        for _ in range(100):  # until the exec has happened
            with open(f"/proc/{p.pid}/cmdline", "rb") as f:
                if f.read().startswith(title.encode()):
                    break
            subprocess.run(["sleep", "0.02"])
        return str(p.pid)

    yield start
    for p in procs:
        p.kill()
        p.wait()


@pytest.mark.parametrize("pid_text", ["-1", "0", "", "1", "abc", " 1", "1 2", "0001",
                                      "99999999999", "1\n-1", "$(id)"])
def test_a_pid_file_naming_no_master_of_ours_is_never_signalled(tmp_path, pid_text):
    r, signals = handover(tmp_path, pid_text, oldbin=pid_text)
    assert r.returncode == 3, r.stdout + r.stderr
    assert r.stdout.startswith("no-master")
    assert signals == []


def test_another_users_unicorn_master_is_never_signalled(tmp_path, fake_process):
    pid = fake_process("unicorn master -c /srv/other/unicorn.rb")
    other = "nobody" if getpass.getuser() != "nobody" else "root"
    r, signals = handover(tmp_path, pid, oldbin=pid, user=other)
    assert r.returncode == 3 and signals == []


def test_a_worker_named_in_the_pid_file_is_never_signalled(tmp_path, fake_process):
    pid = fake_process("unicorn worker[0] -c /srv/sample/unicorn.rb")
    r, signals = handover(tmp_path, pid)
    assert r.returncode == 3 and signals == []


def test_a_master_of_ours_gets_usr2_and_only_its_own_child_is_told_to_quit(tmp_path,
                                                                           fake_process):
    pid = fake_process("unicorn master -c /srv/sample/unicorn.rb")
    r, signals = handover(tmp_path, pid)
    # the fake master forks no new master: it counts as died, nobody else is signalled
    assert r.returncode == 4, r.stdout + r.stderr
    assert signals == [f"kill -USR2 {pid}"]


def test_a_live_oldbin_beside_its_lone_master_is_a_handover_unicorn_already_undid(tmp_path,
                                                                                  fake_process):
    pid = fake_process("unicorn master -c /srv/sample/unicorn.rb")
    r, signals = handover(tmp_path, pid, oldbin=pid)
    assert "half done" in r.stderr
    assert signals == [f"kill -USR2 {pid}"]


@pytest.mark.parametrize("repair, note", [
    ("-", ""),
    ("finished:4610:4700", "finished an interrupted handover (old master 4610 quit, 4700 kept); "),
    ("undone:4610:4700", "undid an interrupted handover (new master 4700 quit, 4610 kept); "),
    ("undone:4610:-", "undid an interrupted handover (4610 kept); "),
])
def test_the_summary_says_what_was_done_to_a_half_done_handover(repair, note):
    assert repair_note(repair) == note


def test_the_handover_goes_on_when_its_ssh_session_goes_away(tmp_path, fake_process):
    # sshd closes the session's pipes (and may send SIGHUP): the writes that follow must
    # not kill the script between USR2 and QUIT.
    pid = fake_process("unicorn master -c /srv/sample/unicorn.rb")
    (tmp_path / "unicorn.pid").write_text(pid)
    (tmp_path / "unicorn.log").write_text("")
    (tmp_path / "trace").write_text("")
    script = tmp_path / "handover.sh"
    script.write_text(RECORD + onhost.load("unicorn_handover.sh"))
    bin_ = fake_systemctl(tmp_path)
    env = {"PATH": f"{bin_}:/usr/bin:/bin", "PIDF": str(tmp_path / "unicorn.pid"),
           "LOG": str(tmp_path / "unicorn.log"), "UNIT": "railsfab-test-none.service",
           "WORKERS": "1", "TIMEOUT": "2", "CURRENT": str(tmp_path),
           "USER_": getpass.getuser(), "TRACE": str(tmp_path / "trace")}
    p = subprocess.Popen(["bash", str(script)], env=env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()
    p.stderr.close()
    for _ in range(100):
        if "USR2" in (tmp_path / "trace").read_text():
            break
        subprocess.run(["sleep", "0.05"])
    p.send_signal(signal.SIGHUP)
    # it ran on to its own end (the fake master never forks a new one): "new-master-died"
    assert p.wait(timeout=30) == 4


def test_a_master_of_the_apps_user_outside_the_units_cgroup_is_never_signalled(tmp_path,
                                                                                fake_process):
    # the app's user can start a process titled "unicorn master" elsewhere (and name it in
    # the pid file): only the unit's own cgroup counts
    pid = fake_process("unicorn master -c /srv/sample/unicorn.rb")
    bin_ = fake_systemctl(tmp_path)
    (bin_ / "systemctl").write_text('#!/bin/sh\necho /system.slice/sample-unicorn.service\n')
    r, signals = handover(tmp_path, pid)
    assert r.returncode == 3 and r.stdout.startswith("no-master") and signals == []


# A unicorn master in bash: USR2 renames the pid file to .oldbin and forks a new master,
# which writes the pid file, boots for BOOT seconds, then forks its worker; QUIT ends a
# master and its workers.
FAKE_UNICORN = r'''pidf=$1; role=$2; mine=""
spawn() { (exec -a "unicorn worker[0] -c fake" sleep 60) & mine=$!; }
if [ "$role" = new ]; then echo $$ > "$pidf"; sleep "$BOOT"; fi
spawn
trap 'mv "$pidf" "$pidf.oldbin"; (exec -a "unicorn master -c fake" bash "$0" "$pidf" new) &' USR2
trap 'kill $mine; exit 0' QUIT
[ "$role" = new ] || echo $$ > "$pidf"
while :; do sleep 0.05; done
'''
# Every command but sleep notes its name, then runs (pgrep sees only the fake's session:
# the machine may run other processes titled "unicorn master").
LOGGED = ("ps", "head", "setpriv", "stat", "cut", "grep", "tr", "date", "readlink", "tail",
          "mktemp", "id", "wc", "sort")


def a_handover(tmp_path, boot: float) -> tuple[subprocess.CompletedProcess, list[str]]:
    """The script's whole handover of a fake unicorn whose new master boots `boot` seconds,
    with unicorn's own kill: what it printed, and the commands it started (but sleep)."""
    tmp_path.mkdir(exist_ok=True)
    bin_, calls = fake_systemctl(tmp_path), tmp_path / "calls"
    calls.write_text("")
    for name in LOGGED:
        (bin_ / name).write_text(f'#!/bin/sh\necho {name} >> "{calls}"\n'
                                 f'PATH=/usr/bin:/bin exec {name} "$@"\n')
        (bin_ / name).chmod(0o755)
    pidf, sid = tmp_path / "unicorn.pid", tmp_path / "sid"
    (bin_ / "pgrep").write_text(f'#!/bin/sh\necho pgrep >> "{calls}"\n'
                                f'exec /usr/bin/pgrep -s "$(cat {sid})" "$@"\n')
    (bin_ / "pgrep").chmod(0o755)
    (tmp_path / "fake.sh").write_text(FAKE_UNICORN)
    # as systemd would start it: not our child (a master that quits is reaped at once), in a
    # session of its own, QUIT not ignored (bash cannot trap a signal ignored on entry: a
    # pytest run in the background of a shell ignores it)
    subprocess.run(["setsid", "--fork", "bash", "-c",
                    f'exec -a "unicorn master -c fake" bash fake.sh {pidf} old'],
                   cwd=tmp_path, env={"BOOT": str(boot), "PATH": "/usr/bin:/bin"}, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   preexec_fn=lambda: signal.signal(signal.SIGQUIT, signal.SIG_DFL))
    try:
        for _ in range(100):
            if pidf.exists() and pidf.read_text().strip():
                break
            subprocess.run(["sleep", "0.02"])
        sid.write_text(pidf.read_text())
        (tmp_path / "unicorn.log").write_text("")
        env = {"PATH": f"{bin_}:/usr/bin:/bin", "PIDF": str(pidf),
               "LOG": str(tmp_path / "unicorn.log"), "UNIT": "railsfab-test-none.service",
               "WORKERS": "1", "TIMEOUT": "20", "CURRENT": str(tmp_path),
               "USER_": getpass.getuser()}
        calls.write_text("")
        r = subprocess.run(["bash", "-s"], input=onhost.load("unicorn_handover.sh"), env=env,
                           capture_output=True, text=True, timeout=60)
        return r, calls.read_text().split()
    finally:  # the masters it left, by their pid files
        for f in (pidf, tmp_path / "unicorn.pid.oldbin"):
            if f.exists():
                subprocess.run(["pkill", "-QUIT", "-F", str(f)], check=False)


def test_a_handover_polls_the_booting_master_without_starting_processes(tmp_path):
    # Each process a poll starts is CPU taken from the new master's boot: a boot 2 s longer
    # (20 more polls) starts no more processes than a short one, but sleep.
    short, short_calls = a_handover(tmp_path / "short", 0.3)
    long, long_calls = a_handover(tmp_path / "long", 2.3)
    for r in (short, long):
        assert r.returncode == 0 and r.stdout.splitlines()[-1].startswith("ok "), r.stderr
    assert len(long_calls) - len(short_calls) <= 2, (short_calls, long_calls)
