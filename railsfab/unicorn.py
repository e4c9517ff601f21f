"""Zero-downtime unicorn restarts that keep systemd in charge of the master.

Design: the unit is Type=forking with PIDFile= pointing at the pid file unicorn.rb writes.
A handover is unicorn's own USR2 re-exec: the old master renames its pid file to
`.oldbin` and forks a new master (from the same command line, so the same config, whose
`working_directory` and `before_exec` point at `current`), which writes the pid file once
it has bound the socket it inherited. Both masters serve from the same listening socket, so
no request is refused. We then QUIT the old master; systemd sees its main process exit,
re-reads PIDFile= and adopts the new master (it is in the unit's cgroup), so `systemctl
status/stop` stay truthful. No sleeps: every wait is a condition polled with a deadline,
and every stage is checked: the new master is alive, runs from the release `current`
points to, has its configured workers, the old master is gone, exactly one master is left,
and systemd's MainPID is the new master.

If the new master fails to boot, unicorn restores the old pid file and the old master keeps
serving; we print the tail of the new master's stderr and fail.
"""

from __future__ import annotations

from railsfab import remote
from railsfab.paths import Paths

HANDOVER = r"""
set -u
pidf=$PIDF; log=$LOG; unit=$UNIT; workers=$WORKERS; timeout=$TIMEOUT; current=$CURRENT
now() { date +%s; }
# What the new master said: the exception line first, then the last lines.
said() { tail -c +$((offset + 1)) "$log" > /tmp/.railsfab-said
         grep -m 3 -E '\([A-Z][A-Za-z:]*(Error|Exception)\)$' /tmp/.railsfab-said | cut -c1-300
         tail -n 4 /tmp/.railsfab-said | cut -c1-300; rm -f /tmp/.railsfab-said; }
masters() { pgrep -u "$USER_" -f '^unicorn master' | sort; }
workers_of() { ps --ppid "$1" -o cmd= 2>/dev/null | grep -c 'unicorn.*worker' || true; }
old=$(cat "$pidf" 2>/dev/null || true)
if [ -z "$old" ] || ! kill -0 "$old" 2>/dev/null; then echo "no-master"; exit 3; fi
offset=$(stat -c %s "$log" 2>/dev/null || echo 0)
t0=$(date +%s%N)
kill -USR2 "$old"
deadline=$(( $(now) + timeout )); new=""; started=$(now)
while :; do
  p=$(cat "$pidf" 2>/dev/null || true)
  if [ -n "$p" ] && [ "$p" != "$old" ] && kill -0 "$p" 2>/dev/null; then
    w=$(workers_of "$p")
    [ "$w" -ge 1 ] && [ -z "${first:-}" ] && first=$(date +%s%N)
    if [ "$w" -ge "$workers" ]; then new=$p; break; fi
  fi
  child=$(ps --ppid "$old" -o pid=,cmd= | grep 'unicorn master' | grep -v worker || true)
  if [ -z "$child" ] && [ "$p" = "$old" ] && [ ! -e "$pidf.oldbin" ] \
     && [ $(( $(now) - started )) -ge 1 ]; then
    echo "new-master-died"; said; exit 4
  fi
  if [ "$(now)" -ge "$deadline" ]; then
    [ -n "$p" ] && [ "$p" != "$old" ] && kill -QUIT "$p" 2>/dev/null
    echo "new-master-timeout"; said; exit 5
  fi
  sleep 0.1
done
kill -QUIT "$old"
deadline=$(( $(now) + timeout + 10 ))
while kill -0 "$old" 2>/dev/null; do
  [ "$(now)" -ge "$deadline" ] && { echo "old-master-stuck $old"; exit 6; }
  sleep 0.1
done
deadline=$(( $(now) + 10 ))
mainpid() { systemctl show -p MainPID --value "$unit"; }
while [ "$(mainpid)" != "$new" ]; do
  [ "$(now)" -ge "$deadline" ] && { echo "systemd-lost-track $(mainpid)"; exit 7; }
  sleep 0.1
done
n=$(masters | wc -l)
[ "$n" = 1 ] || { echo "masters $n: $(masters | tr '\n' ' ')"; exit 8; }
cwd=$(readlink "/proc/$new/cwd"); want=$(readlink -f "$current")
[ "$cwd" = "$want" ] || { echo "wrong-release $cwd (current is $want)"; exit 9; }
echo "ok $old $new $(workers_of "$new") $(( (first - t0) / 1000000 )) $cwd"
"""

FAILURES = {
    3: "unicorn is not running (no live master in the pid file)",
    4: "the new unicorn master failed to boot; the old master keeps serving",
    5: "the new unicorn master did not get its workers up in time; the old master keeps serving",
    6: "the old unicorn master did not quit in time",
    7: "systemd did not adopt the new master",
    8: "more than one unicorn master is running",
    9: "the new master does not run the release `current` points to",
}


def handover(conn, paths: Paths, *, user: str, workers: int, timeout: int, step: str) -> str:
    """USR2 handover as described above; returns a one-line summary, raises on failure."""
    env = {"PIDF": paths.pid, "LOG": paths.server_log, "UNIT": paths.unit_name,
           "WORKERS": str(workers), "TIMEOUT": str(timeout + 60), "CURRENT": paths.current,
           "USER_": user}
    old, new, nworkers, ready_ms, cwd = remote.checked_script(
        conn, HANDOVER, env, step=step, timeout=timeout + 120, failures=FAILURES,
        fix=f"see {paths.server_log} on the host")
    return (f"master {old} -> {new}, {nworkers} workers serving "
            f"{cwd.rsplit('/', 1)[-1]}, first new worker up {int(ready_ms) / 1000:.1f}s "
            "after USR2")
