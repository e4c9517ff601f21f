"""Zero-downtime puma restarts, verified, with systemd in charge of the master throughout.

Two of puma's own mechanisms, both signals to the master (systemd's MainPID):
  phased (USR1)  the master stays; it chdirs to `current` (puma.rb's `directory`), then
                 replaces its workers one at a time, each loading the app afresh. The other
                 workers keep serving, so no request waits. Only possible without
                 preload_app, and only when the gems did not change: the master's Bundler
                 setup is inherited by every worker it forks.
  hot (USR2)     the master finishes its requests, then re-execs itself in `current` with
                 the listening socket inherited: new config, new gems. Requests wait in the
                 socket's backlog while it boots (none is refused, a few are slower).
The master's PID survives both, so systemd never loses track of it (Type=notify: RELOADING=1
then READY=1). Every stage is checked with a deadline, no sleeps: the master is alive, the
configured number of workers booted since the signal, none of the old workers is left, each
runs from the release `current` points to, and the unit is active again.

If the new workers cannot load the app, puma would fork them again forever: we stop waiting
at the first "Unable to start worker", print what the worker said and fail (in a phased
restart the old workers not yet replaced keep serving; deploy then reverts `current` and
restarts again).
"""

from __future__ import annotations

from railsfab import remote
from railsfab.paths import Paths

SIGNALS = {"phased": "USR1", "hot": "USR2"}

RESTART = r"""
set -u
unit=$UNIT; out=$OUT; err=$ERR; workers=$WORKERS; timeout=$TIMEOUT; current=$CURRENT
now() { date +%s; }
# How puma 5 says that a worker could not load the app (cluster mode, then single mode).
unable='Unable to (start worker|load application)'
since() { tail -c +$(( $2 + 1 )) "$1" 2>/dev/null; }
said() { since "$out" "$ooff" | grep -m 1 -A 1 -E "$unable" | cut -c1-300
         since "$err" "$eoff" > /tmp/.railsfab-said
         grep -m 3 -E '(Error|Exception)' /tmp/.railsfab-said | cut -c1-300
         tail -n 4 /tmp/.railsfab-said | cut -c1-300; rm -f /tmp/.railsfab-said; }
kids() { ps --ppid "$1" -o pid= | tr -s ' \n' '  '; }
master=$(systemctl show -p MainPID --value "$unit")
if [ -z "$master" ] || [ "$master" = 0 ] || ! kill -0 "$master" 2>/dev/null; then
  echo "no-master"; exit 3
fi
old=" $(kids "$master") "
ooff=$(stat -c %s "$out" 2>/dev/null || echo 0); eoff=$(stat -c %s "$err" 2>/dev/null || echo 0)
t0=$(date +%s%N); first=""
kill -"$SIG" "$master"
deadline=$(( $(now) + timeout ))
while :; do
  kill -0 "$master" 2>/dev/null || { echo "master-died"; said; exit 4; }
  booted=$(since "$out" "$ooff" | grep -c 'booted in' || true)
  [ "$booted" -ge 1 ] && [ -z "$first" ] && first=$(date +%s%N)
  if [ "$booted" -ge "$workers" ]; then
    n=0; stale=0
    for k in $(kids "$master"); do
      n=$((n + 1)); case "$old" in *" $k "*) stale=$((stale + 1)) ;; esac
    done
    if [ "$n" = "$workers" ] && [ "$stale" = 0 ] \
       && [ "$(systemctl show -p ActiveState --value "$unit")" = active ]; then break; fi
  fi
  if { since "$out" "$ooff"; since "$err" "$eoff"; } | grep -qE "$unable"; then
    echo "workers-fail"; said; exit 5
  fi
  [ "$(now)" -ge "$deadline" ] && { echo "timeout"; said; exit 6; }
  sleep 0.1
done
[ "$(systemctl show -p MainPID --value "$unit")" = "$master" ] \
  || { echo "systemd-lost-track"; exit 7; }
want=$(readlink -f "$current")
for k in $(kids "$master"); do
  cwd=$(readlink "/proc/$k/cwd")
  [ "$cwd" = "$want" ] || { echo "wrong-release worker $k in $cwd (current is $want)"; exit 9; }
done
echo "ok $master $n $(( (first - t0) / 1000000 )) $want"
"""

FAILURES = {
    3: "puma is not running (systemd has no main process for it)",
    4: "the puma master died during the restart",
    5: "the new puma workers cannot load the app",
    6: "the new puma workers did not boot in time",
    7: "systemd no longer tracks the puma master",
    9: "a puma worker does not run the release `current` points to",
}


def restart(conn, paths: Paths, *, workers: int, timeout: int, mode: str, step: str) -> str:
    """A phased or hot restart as described above; returns a one-line summary."""
    env = {"UNIT": paths.unit_name, "OUT": paths.server_stdout, "ERR": paths.server_log,
           "WORKERS": str(workers), "TIMEOUT": str(timeout), "CURRENT": paths.current,
           "SIG": SIGNALS[mode]}
    master, n, ready_ms, cwd = remote.checked_script(
        conn, RESTART, env, step=step, timeout=timeout + 60, failures=FAILURES,
        fix=f"see {paths.server_stdout} and {paths.server_log} on the host")
    return (f"{mode} restart of master {master}: {n} new workers serving "
            f"{cwd.rsplit('/', 1)[-1]}, first up {int(ready_ms) / 1000:.1f}s after "
            f"{SIGNALS[mode]}")
