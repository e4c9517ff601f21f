# Verify what a client gets: the health path, the home page and one asset, through nginx (or
# the app server's own port). Environment: BASE (http://127.0.0.1[:port]), HEALTH, PUBLIC
# (the release's public/ folder), PROTO (https when clients come through TLS, else empty),
# TIMEOUT, LOG (the app's Rails log, read as USER_, the app's user). Waits (bounded) while the app is not up yet (no answer,
# 502/503/504 from nginx); an error the app itself answers (500...) ends it at once; another
# answer (a redirect, a 404) ends it once it has not changed for STEADY seconds (right after
# a reload, nginx's old workers may still answer with the old site). Prints "PATH CODE
# LOCATION" lines, health path first, then "error LINE": what the app logged for the first
# of these requests it failed (by their X-Request-Id; else its first error since the start).
set -u
asset=$(cd "$PUBLIC" 2>/dev/null && ls assets/*.css 2>/dev/null | head -n1)
hdr=""; [ -n "$PROTO" ] && hdr="X-Forwarded-Proto:$PROTO"  # no space: one word
rid="railsfab-verify-$(date +%s%N)"
applog() { runuser -u "$USER_" -- tail -c "+$1" "$LOG" 2>/dev/null; }  # never root's read
offset=$(runuser -u "$USER_" -- stat -L -c %s "$LOG" 2>/dev/null || echo 0)
ask() { curl -s -o /dev/null -m 10 ${hdr:+-H} $hdr -H "X-Request-Id: $rid" \
          -w '%{http_code} %{redirect_url}' "$BASE$1"; }
# an answer of the app's own: a 5xx that is not nginx waiting for it
failed() { case "$1" in 502|503|504) return 1 ;; 5*) return 0 ;; *) return 1 ;; esac; }
end=$(( $(date +%s) + TIMEOUT )); seen=""; since=0
while :; do
  up=$(ask "$HEALTH"); root=$(ask /)
  if [ -n "$asset" ]; then a=$(ask "/$asset"); else a=""; fi
  codes="${up%% *}${root%% *}${a%% *}"
  case "$codes" in 200200200|200200) break ;; esac
  err=""; for c in "${up%% *}" "${root%% *}" "${a%% *}"; do failed "$c" && err=$c; done
  [ -n "$err" ] && break
  now=$(date +%s)
  [ "$codes" != "$seen" ] && { seen=$codes; since=$now; }
  case "${up%% *}" in 000|5*) ;; *) [ $(( now - since )) -ge "${STEADY:-3}" ] && break ;; esac
  [ "$now" -ge "$end" ] && break
  sleep 0.2
done
echo "$HEALTH $up"
echo "/ $root"
[ -n "$asset" ] && echo "/$asset $a"
if [ -n "${err:-}" ]; then
  new=$(applog $((offset + 1)))
  raised='[A-Za-z:]*(Error|Exception) \('  # "ActionView::Template::Error (the message)"
  line=$(printf '%s\n' "$new" | grep -F "[$rid]" | grep -m 1 -E "$raised")
  [ -z "$line" ] && line=$(printf '%s\n' "$new" | grep -m 1 -E "$raised")
  [ -z "$line" ] && line=$(printf '%s\n' "$new" | grep -F "[$rid]" | grep -m 1 -E 'Error|Exception')
  [ -n "$line" ] && echo "error $(printf '%s' "$line" | cut -c1-300)"
fi
true
