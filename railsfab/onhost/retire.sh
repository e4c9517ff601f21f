# Retire the app server a stage no longer runs (after a switch unicorn <-> puma), once the
# new one serves and nginx was reloaded onto it. Environment: UNIT UNIT_FILE CONFIG PIDF
# SOCKET USER_ PATTERN. Prints "ended PIDS" when processes outlived their unit.
set -u
# nginx's workers from before the reload may still pass requests to the old socket, and a
# server that stops resets what waits in its backlog: stop it once they are gone and
# nothing is connected to it any more (bounded).
echo "waiting for nginx's old workers and connections on $SOCKET" >&2
end=$(( $(date +%s) + 60 ))
while [ "$(date +%s)" -lt "$end" ]; do
  if ! pgrep -f '^nginx: worker process is shutting down' >/dev/null \
     && ! ss -Hx state connected 2>/dev/null | grep -qF " $SOCKET "; then break; fi
  sleep 0.1
done
echo "stopping $UNIT" >&2
systemctl disable -q --now "$UNIT" 2>/dev/null || systemctl stop "$UNIT" 2>/dev/null || true
rm -f "$UNIT_FILE" "$CONFIG" "$PIDF" "$PIDF.oldbin" "$SOCKET"
systemctl daemon-reload && systemctl reset-failed "$UNIT" 2>/dev/null || true
# The old server's processes are ours (its unit started them): any left over are ended by
# PID, and named in the output.
left=$(pgrep -u "$USER_" -f "$PATTERN" || true)
if [ -n "$left" ]; then
  kill -TERM $left 2>/dev/null; sleep 2
  still=$(for p in $left; do kill -0 "$p" 2>/dev/null && echo "$p"; done)
  [ -n "$still" ] && kill -KILL $still 2>/dev/null
  echo "ended $(echo $left | tr '\n' ' ')"
fi
true
