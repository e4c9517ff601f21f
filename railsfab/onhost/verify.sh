# Verify what a client gets: the health path, the home page and one asset, through nginx (or
# the app server's own port). Environment: BASE (http://127.0.0.1[:port]), HEALTH, PUBLIC
# (the release's public/ folder), PROTO (https when clients come through TLS, else empty),
# TIMEOUT. Waits (bounded) while the app is not up yet (no answer, 5xx); another answer (a
# redirect, a 404) ends it once it has not changed for STEADY seconds (right after a reload,
# nginx's old workers may still answer with the old site). Prints "PATH CODE LOCATION" lines,
# health path first.
set -u
asset=$(cd "$PUBLIC" 2>/dev/null && ls assets/*.css 2>/dev/null | head -n1)
hdr=""; [ -n "$PROTO" ] && hdr="X-Forwarded-Proto:$PROTO"  # no space: one word
ask() { curl -s -o /dev/null -m 10 ${hdr:+-H} $hdr -w '%{http_code} %{redirect_url}' "$BASE$1"; }
end=$(( $(date +%s) + TIMEOUT )); seen=""; since=0
while :; do
  up=$(ask "$HEALTH"); root=$(ask /)
  if [ -n "$asset" ]; then a=$(ask "/$asset"); else a=""; fi
  codes="${up%% *}${root%% *}${a%% *}"
  case "$codes" in 200200200|200200) break ;; esac
  now=$(date +%s)
  [ "$codes" != "$seen" ] && { seen=$codes; since=$now; }
  case "${up%% *}" in 000|5*) ;; *) [ $(( now - since )) -ge "${STEADY:-3}" ] && break ;; esac
  [ "$now" -ge "$end" ] && break
  sleep 0.2
done
echo "$HEALTH $up"
echo "/ $root"
[ -n "$asset" ] && echo "/$asset $a"
true
