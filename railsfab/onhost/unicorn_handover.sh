# A zero-downtime unicorn restart (USR2 re-exec), every stage checked with a deadline.
# Environment: PIDF LOG UNIT WORKERS TIMEOUT CURRENT USER_. Success: a last line
# "ok OLD NEW WORKERS FIRST_MS CWD REPAIR" (REPAIR: "-", or what was done to a handover an
# earlier command left half done: "finished:OLD:NEW", "undone:OLD:NEW"); failure: an exit
# status railsfab.appserver.unicorn names, with the evidence before it. Progress: stderr.
set -u
# The SSH session may go away mid-handover (fab killed, connection cut): sshd closes our
# output, and the next write would kill us with SIGPIPE between USR2 and QUIT, leaving two
# masters. Ignore that and a hangup: the handover then finishes here by itself.
trap '' HUP PIPE
pidf=$PIDF; log=$LOG; unit=$UNIT; workers=$WORKERS; timeout=$TIMEOUT; current=$CURRENT
uid=$(id -u "$USER_") || { echo "no-user $USER_"; exit 3; }
cgroup=$(systemctl show -p ControlGroup --value "$unit" 2>/dev/null)
# What the new master said: the exception line first, then the last lines.
# The logs are in the app's folder: read as the app's user (a link there to /etc/shadow
# shows nothing), never as root.
# (setpriv: no PAM session per read, unlike runuser)
as_app() { setpriv --reuid="$USER_" --regid="$USER_" --init-groups -- "$@"; }
since() { as_app tail -c +$(($1 + 1)) "$log" 2>/dev/null; }
said() { t=$(mktemp) && since "$offset" > "$t"
         grep -m 3 -E '\([A-Z][A-Za-z:]*(Error|Exception)\)$' "$t" | cut -c1-300
         tail -n 4 "$t" | cut -c1-300; rm -f "$t"; }
masters() { pgrep -u "$USER_" -f '^unicorn master' | sort; }
# The waits below poll every 0.1 s while a new master boots. Every process a poll starts is
# CPU taken from that boot (each host's at once, under load, on a small instance): a poll
# starts `sleep` (and the pid file's read once the new master has its workers); times,
# children and titles are bash's own ($EPOCHSECONDS, /proc read with builtins); a PID is
# checked for ownership once.
# PID: its children, into K: the kernel's list (unicorn forks from its main thread), else ps
kids() { local f="/proc/$1/task/$1/children"; K=""
         if [ -e "$f" ]; then read -r K 2>/dev/null < "$f"
         else K=$(ps --ppid "$1" -o pid= 2>/dev/null); fi; }
workers_of() { local n=0 c; kids "$1"; for c in $K; do
                 title "$c"; case "$T" in *unicorn*worker*) n=$((n + 1)) ;; esac; done; echo "$n"; }
mainpid() { systemctl show -p MainPID --value "$unit"; }
# Every PID read from the host is untrusted: it must be a positive decimal number naming a
# live process of the app's user in the unit's own cgroup before we signal it (never -1, 0,
# someone else's, or one of the app user's started elsewhere). The pid file is read as the
# app's user (its folder).
readpid() { as_app head -c 32 "$1" 2>/dev/null; }
owned() { case "$1" in '' | 0* | *[!0-9]*) return 1 ;; esac
          [ "${#1}" -le 9 ] && [ "$(stat -c %u "/proc/$1" 2>/dev/null)" = "$uid" ] \
            && [ -n "$cgroup" ] && cut -d: -f3- "/proc/$1/cgroup" 2>/dev/null | grep -qxF "$cgroup"; }
title() { local a=(); mapfile -td '' a 2>/dev/null < "/proc/$1/cmdline"; T="${a[*]}"; }  # into T
is_master() { owned "$1" && title "$1" && case "$T" in "unicorn master"*) ;; *) false ;; esac; }
# The master a USR2 forked: the old master's child that is no worker (while it boots, its
# title is still the command line that started it).
reexec_child() { local c; kids "$1"; for c in $K; do
                   title "$c"; case "$T" in *worker*) continue ;; esac
                   owned "$c" && { echo "$c"; return; }
                 done; }
gone() { # PID [SECONDS]: wait until it has exited
  local d=$(( EPOCHSECONDS + ${2:-$((timeout + 10))} ))
  while kill -0 "$1" 2>/dev/null; do [ "$EPOCHSECONDS" -ge "$d" ] && return 1; sleep 0.1; done; }
adopted() { # PID: wait until systemd's MainPID is it
  local d=$(( EPOCHSECONDS + 10 ))
  while [ "$(mainpid)" != "$1" ]; do [ "$EPOCHSECONDS" -ge "$d" ] && return 1; sleep 0.1; done; }

# A handover an earlier command left half done (interrupted between USR2 and QUIT, or a
# USR2 sent by hand): `.oldbin` names a live master, and unicorn refuses another USR2.
# Finish it when the new master has all its workers in the release `current` points to
# (or the old master has already let its workers go); otherwise undo it: QUIT the new
# master, and the old one, its parent, restores the pid file and keeps serving. A new
# master still booting is waited for (bounded) first.
repair=-
settle() {
  o=$(readpid "$pidf.oldbin"); is_master "$o" || return 0
  echo "an earlier handover is half done: master $o holds $pidf.oldbin" >&2
  local d=$(( EPOCHSECONDS + timeout )) n kid ready=""
  while :; do
    n=$(readpid "$pidf"); kid=$(reexec_child "$o")
    [ -z "$kid" ] && [ "$n" = "$o" ] && { repair="undone:$o:-"; return 0; }
    [ -n "$kid" ] && [ "$n" = "$kid" ] && is_master "$n" \
      && [ "$(workers_of "$n")" -ge "$workers" ] && { ready=1; break; }
    [ "$EPOCHSECONDS" -ge "$d" ] && break
    sleep 0.1
  done
  if [ -n "$ready" ] && { [ "$(readlink "/proc/$n/cwd")" = "$(readlink -f "$current")" ] \
                          || [ "$(workers_of "$o")" = 0 ]; }; then
    kill -QUIT "$o"
    gone "$o" || { echo "old-master-stuck $o"; exit 6; }
    adopted "$n" || { echo "systemd-lost-track $(mainpid)"; exit 7; }
    repair="finished:$o:$n"
    echo "finished the half-done handover: old master $o quit, master $n kept" >&2
  elif [ -n "$kid" ] && [ "$(workers_of "$o")" -gt 0 ]; then
    kill -QUIT "$kid"
    gone "$kid" 60 || { echo "half-done $o $kid: new master did not quit"; exit 11; }
    d=$(( EPOCHSECONDS + 10 ))
    until [ "$(readpid "$pidf")" = "$o" ]; do
      [ "$EPOCHSECONDS" -ge "$d" ] && { echo "half-done $o $kid: pid file not restored"; exit 11; }
      sleep 0.1
    done
    repair="undone:$o:$kid"
    echo "undid the half-done handover: new master $kid quit, master $o kept" >&2
  else
    echo "half-done $o ${kid:--}: neither master serves with all its workers"; exit 11
  fi
}
offset=$(as_app stat -L -c %s "$log" 2>/dev/null || echo 0)
settle
old=$(readpid "$pidf")
is_master "$old" || { echo "no-master $(printf %s "$old" | tr -cd '0-9a-z-' | cut -c1-20)"; exit 3; }
offset=$(as_app stat -L -c %s "$log" 2>/dev/null || echo 0)
t0=${EPOCHREALTIME//[!0-9]/}  # microseconds
kill -USR2 "$old"
echo "USR2 sent to master $old; waiting for the new master's workers" >&2
# `mine`: the new master the pid file named (checked once, then followed while it lives);
# its workers are counted until they are all up, then the pid file must still name it.
deadline=$(( EPOCHSECONDS + timeout )); new=""; started=$EPOCHSECONDS; seen=-1; mine=""
while :; do
  if [ -z "$mine" ] || ! kill -0 "$mine" 2>/dev/null; then
    mine=""; p=$(readpid "$pidf")
    [ "$p" != "$old" ] && owned "$p" && mine=$p
  fi
  if [ -n "$mine" ]; then
    w=$(workers_of "$mine")
    [ "$w" -ge 1 ] && [ -z "${first:-}" ] && first=${EPOCHREALTIME//[!0-9]/}
    [ "$w" != "$seen" ] && { echo "new master $mine: $w of $workers workers up" >&2; seen=$w; }
    if [ "$w" -ge "$workers" ]; then
      p=$(readpid "$pidf")
      [ "$p" = "$mine" ] && owned "$p" && { new=$p; break; }
      mine=""
    fi
  else
    child=$(reexec_child "$old")
    if [ -z "$child" ] && [ "$p" = "$old" ] && [ ! -e "$pidf.oldbin" ] \
       && [ $(( EPOCHSECONDS - started )) -ge 1 ]; then
      echo "new-master-died"; said; exit 4
    fi
    if [ -z "$child" ] && since "$offset" | grep -qE 'refusing rexec|reexec-ed child already running'; then
      echo "usr2-refused"; said; exit 10
    fi
  fi
  if [ "$EPOCHSECONDS" -ge "$deadline" ]; then
    child=$(reexec_child "$old")
    [ -n "$child" ] && kill -QUIT "$child" 2>/dev/null
    echo "new-master-timeout"; said; exit 5
  fi
  sleep 0.1
done
echo "QUIT sent to the old master $old" >&2
kill -QUIT "$old"
gone "$old" || { echo "old-master-stuck $old"; exit 6; }
adopted "$new" || { echo "systemd-lost-track $(mainpid)"; exit 7; }
n=$(masters | wc -l)
[ "$n" = 1 ] || { echo "masters $n: $(masters | tr '\n' ' ')"; exit 8; }
cwd=$(readlink "/proc/$new/cwd"); want=$(readlink -f "$current")
[ "$cwd" = "$want" ] || { echo "wrong-release $cwd (current is $want)"; exit 9; }
echo "ok $old $new $(workers_of "$new") $(( (first - t0) / 1000 )) $cwd $repair"
