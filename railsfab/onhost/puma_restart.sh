# A verified puma restart: phased (SIG=USR1, workers one at a time) or hot (SIG=USR2, the
# master re-execs). Environment: UNIT OUT ERR WORKERS TIMEOUT CURRENT SIG. Success: a last
# line "ok MASTER WORKERS FIRST_MS CWD"; failure: an exit status railsfab.appserver.puma
# names, with the evidence before it. Progress goes to stderr.
set -u
unit=$UNIT; out=$OUT; err=$ERR; workers=$WORKERS; timeout=$TIMEOUT; current=$CURRENT
# The wait below polls every 0.1 s while workers boot: each process a poll starts is CPU
# taken from them, so a poll reads puma's output once (the error log once a second), and
# times are bash's own ($EPOCHSECONDS).
# How puma 5 says that a worker could not load the app (cluster mode, then single mode).
unable='Unable to (start worker|load application)'
# The logs are in the app's folder: read as the app's user (a link there to /etc/shadow
# shows nothing), never as root; setpriv opens no PAM session per read.
as_app() { setpriv --reuid="$USER_" --regid="$USER_" --init-groups -- "$@"; }
since() { as_app tail -c +$(( $2 + 1 )) "$1" 2>/dev/null; }
said() { since "$out" "$ooff" | grep -m 1 -A 1 -E "$unable" | cut -c1-300
         t=$(mktemp) && since "$err" "$eoff" > "$t"
         grep -m 3 -E '(Error|Exception)' "$t" | cut -c1-300
         tail -n 4 "$t" | cut -c1-300; rm -f "$t"; }
kids() { ps --ppid "$1" -o pid= | tr -s ' \n' '  '; }
master=$(systemctl show -p MainPID --value "$unit")
if [ -z "$master" ] || [ "$master" = 0 ] || ! kill -0 "$master" 2>/dev/null; then
  echo "no-master"; exit 3
fi
# A restart an earlier command began may still be under way (that command was killed or its
# SSH session cut; puma finishes it by itself): let it end first. A signal that reaches the
# master while it re-execs kills it, and systemd restarts puma with a gap.
busy() { [ "$(systemctl show -p ActiveState --value "$unit")" = reloading ] \
         || ! tr '\0' ' ' < "/proc/$master/cmdline" 2>/dev/null | grep -q '^puma [0-9]'; }
if busy; then
  echo "an earlier restart of master $master is still under way; waiting for it" >&2
  deadline=$(( $EPOCHSECONDS + timeout ))
  while busy; do
    kill -0 "$master" 2>/dev/null || { echo "master-died"; exit 4; }
    [ "$EPOCHSECONDS" -ge "$deadline" ] && { echo "still-restarting"; exit 8; }
    sleep 0.1
  done
  echo "the earlier restart of master $master ended" >&2
fi
old=" $(kids "$master") "
ooff=$(as_app stat -L -c %s "$out" 2>/dev/null || echo 0)
eoff=$(as_app stat -L -c %s "$err" 2>/dev/null || echo 0)
t0=${EPOCHREALTIME//[!0-9]/}; first=""; seen=-1; tick=0  # microseconds
kill -"$SIG" "$master"
echo "$SIG sent to master $master; waiting for $workers new workers" >&2
deadline=$(( EPOCHSECONDS + timeout ))
while :; do
  kill -0 "$master" 2>/dev/null || { echo "master-died"; said; exit 4; }
  read -r booted failing < <(since "$out" "$ooff" \
    | awk -v u="$unable" '/booted in/ { b++ } $0 ~ u { f = 1 } END { print b + 0, f + 0 }')
  [ "$booted" -ge 1 ] && [ -z "$first" ] && first=${EPOCHREALTIME//[!0-9]/}
  [ "$booted" != "$seen" ] && { echo "$booted of $workers new workers booted" >&2; seen=$booted; }
  if [ "$booted" -ge "$workers" ]; then
    n=0; stale=0
    for k in $(kids "$master"); do
      n=$((n + 1)); case "$old" in *" $k "*) stale=$((stale + 1)) ;; esac
    done
    if [ "$n" = "$workers" ] && [ "$stale" = 0 ] \
       && [ "$(systemctl show -p ActiveState --value "$unit")" = active ]; then break; fi
  fi
  if [ $(( tick % 10 )) = 0 ] && since "$err" "$eoff" | grep -qE "$unable"; then failing=1; fi
  tick=$((tick + 1))
  if [ "$failing" = 1 ]; then
    echo "workers-fail"; said; exit 5
  fi
  [ "$EPOCHSECONDS" -ge "$deadline" ] && { echo "timeout"; said; exit 6; }
  sleep 0.1
done
[ "$(systemctl show -p MainPID --value "$unit")" = "$master" ] \
  || { echo "systemd-lost-track"; exit 7; }
want=$(readlink -f "$current")
for k in $(kids "$master"); do
  cwd=$(readlink "/proc/$k/cwd")
  [ "$cwd" = "$want" ] || { echo "wrong-release worker $k in $cwd (current is $want)"; exit 9; }
done
echo "ok $master $n $(( (first - t0) / 1000 )) $want"
