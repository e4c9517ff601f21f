# A zero-downtime unicorn restart (USR2 re-exec), every stage checked with a deadline.
# Environment: PIDF LOG UNIT WORKERS TIMEOUT CURRENT USER_. Success: a last line
# "ok OLD NEW WORKERS FIRST_MS CWD"; failure: an exit status railsfab.appserver.unicorn
# names, with the evidence before it. Progress goes to stderr.
set -u
pidf=$PIDF; log=$LOG; unit=$UNIT; workers=$WORKERS; timeout=$TIMEOUT; current=$CURRENT
now() { date +%s; }
# What the new master said: the exception line first, then the last lines.
said() { t=$(mktemp) && tail -c +$((offset + 1)) "$log" > "$t"
         grep -m 3 -E '\([A-Z][A-Za-z:]*(Error|Exception)\)$' "$t" | cut -c1-300
         tail -n 4 "$t" | cut -c1-300; rm -f "$t"; }
masters() { pgrep -u "$USER_" -f '^unicorn master' | sort; }
workers_of() { ps --ppid "$1" -o cmd= 2>/dev/null | grep -c 'unicorn.*worker' || true; }
old=$(cat "$pidf" 2>/dev/null || true)
if [ -z "$old" ] || ! kill -0 "$old" 2>/dev/null; then echo "no-master"; exit 3; fi
offset=$(stat -c %s "$log" 2>/dev/null || echo 0)
t0=$(date +%s%N)
kill -USR2 "$old"
echo "USR2 sent to master $old; waiting for the new master's workers" >&2
deadline=$(( $(now) + timeout )); new=""; started=$(now); seen=-1
while :; do
  p=$(cat "$pidf" 2>/dev/null || true)
  if [ -n "$p" ] && [ "$p" != "$old" ] && kill -0 "$p" 2>/dev/null; then
    w=$(workers_of "$p")
    [ "$w" -ge 1 ] && [ -z "${first:-}" ] && first=$(date +%s%N)
    [ "$w" != "$seen" ] && { echo "new master $p: $w of $workers workers up" >&2; seen=$w; }
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
echo "QUIT sent to the old master $old" >&2
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
