"""Each sandbox host's nspawn starts in cgroups of its own: the wrapper writes its PID into
every cgroup.procs given, then becomes the command itself (same PID: the PID file is
nspawn's). Plain files stand in for cgroup.procs here."""

from __future__ import annotations

import subprocess

from railsfab.sandbox import cgroups


def test_the_command_runs_with_the_pid_written_into_each_cgroup(tmp_path):
    procs = [tmp_path / "systemd.procs", tmp_path / "unified.procs"]
    for p in procs:
        p.write_text("")
    argv = cgroups.wrap(["sh", "-c", "echo $$"], procs)
    proc = subprocess.run(argv, capture_output=True, text=True, check=True)
    pid = proc.stdout.strip()
    assert [p.read_text().strip() for p in procs] == [pid, pid]


def test_a_cgroup_that_cannot_be_joined_stops_the_start(tmp_path):
    argv = cgroups.wrap(["echo", "started"], [tmp_path / "missing/cgroup.procs"])
    proc = subprocess.run(argv, capture_output=True, text=True)
    assert proc.returncode != 0 and "started" not in proc.stdout


def test_without_cgroups_the_command_is_unchanged():
    assert cgroups.wrap(["systemd-nspawn", "-b"], []) == ["systemd-nspawn", "-b"]
