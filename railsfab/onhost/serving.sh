# Readiness means serving: wait until the app server answers HTTP on its own socket or port
# (any answer below 500: the app is up, whatever it says about the health path itself).
# Environment: SOCKET (a unix socket path) or PORT, HEALTH (the health path), PROTO (https
# when clients come through TLS, else empty), TIMEOUT, UNIT, LOG (the server's stderr log,
# for the evidence), RAILS_LOG and USER_ (the app's log, read as the app's user).
# Success: "ok CODE MILLISECONDS"; failure: exit 4 (the unit stopped or failed), 5 (no
# answer in time) or 6 (the app answered with a 5xx: at once, not after the deadline),
# evidence before it.
set -u
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
t0=$(now_ms); deadline=$(( t0 + TIMEOUT * 1000 ))
offset=$(stat -c %s "$LOG" 2>/dev/null || echo 0)
applog() { [ -n "${RAILS_LOG:-}" ] && runuser -u "$USER_" -- tail -c "+$1" "$RAILS_LOG" 2>/dev/null; }
roff=$(runuser -u "${USER_:-nobody}" -- stat -L -c %s "${RAILS_LOG:-/nonexistent}" 2>/dev/null || echo 0)
hdr=""; [ -n "${PROTO:-}" ] && hdr="X-Forwarded-Proto:$PROTO"  # no space: one word
if [ -n "${SOCKET:-}" ]; then
  ask() { curl -s -o /dev/null -m 5 -w '%{http_code}' ${hdr:+-H} $hdr --unix-socket "$SOCKET" "http://localhost$HEALTH"; }
  where="unix:$SOCKET"
else
  ask() { curl -s -o /dev/null -m 5 -w '%{http_code}' ${hdr:+-H} $hdr "http://127.0.0.1:$PORT$HEALTH"; }
  where="127.0.0.1:$PORT"
fi
said() { runuser -u "${USER_:-nobody}" -- tail -c +$((offset + 1)) "$LOG" 2>/dev/null | grep -m 3 -E '(Error|Exception|denied)' | cut -c1-300
         journalctl -u "$UNIT" -n 3 --no-pager -q 2>/dev/null | cut -c1-300; }
echo "waiting for $where to answer $HEALTH" >&2
last=""
while :; do
  code=$(ask); code=${code:-000}
  if [ "$code" != 000 ] && [ "$code" -lt 500 ]; then
    echo "ok $code $(( $(now_ms) - t0 ))"; exit 0
  fi
  [ "$code" != "$last" ] && { echo "$where answers $code" >&2; last=$code; }
  if [ "$code" != 000 ]; then
    echo "answers-error $HEALTH $code"
    applog $((roff + 1)) | grep -m 2 -E '(Error|Exception)' | cut -c1-300; said; exit 6
  fi
  state=$(systemctl show -p ActiveState --value "$UNIT")
  case "$state" in failed|inactive) echo "unit-$state $HEALTH $code"; said; exit 4 ;; esac
  [ "$(now_ms)" -ge "$deadline" ] && { echo "no-answer $HEALTH $code"; said; exit 5; }
  sleep 0.1
done
