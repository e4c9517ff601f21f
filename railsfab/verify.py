"""The post-deploy check, run on the host: `/`, `/up` and one asset through nginx (or, on a
stage without nginx, straight from the app server's port)."""

from __future__ import annotations

from railsfab import remote
from railsfab.errors import RailsfabError
from railsfab.inventory import App
from railsfab.paths import Paths

TIMEOUT = 60


def serving(conn, paths: Paths, app: App, *, step: str = "verify") -> str:
    """Wait (bounded) until all three answer 200; return a summary or raise naming the layer.
    Through nginx on :80, or from the app server's own port when the stage has no nginx."""
    port = app.http_port
    script = f"""asset=$(cd {paths.current}/public && ls assets/*.css 2>/dev/null | head -n1)
code() {{ curl -s -o /dev/null -m 10 -w '%{{http_code}}' "http://127.0.0.1:{port}$1"; }}
end=$(( $(date +%s) + {TIMEOUT} ))
while :; do
  up=$(code /up); root=$(code /); a=$(code "/$asset")
  [ "$up$root$a" = 200200200 ] && break
  [ $(date +%s) -ge $end ] && break
  sleep 0.2
done
echo "/up $up"; echo "/ $root"; echo "/$asset $a\""""
    out = remote.sh(conn, script, step=step, timeout=TIMEOUT + 30).stdout
    codes = dict(ln.rsplit(" ", 1) for ln in out.strip().splitlines()[:3])
    bad = {k: v for k, v in codes.items() if v != "200"}
    if bad:
        front = "nginx" if app.nginx else f"{app.app_server} on :{port}"
        layer = (f"{paths.app_server} (nginx answers 502)" if "502" in bad.values()
                 else "the app" if "500" in bad.values() else front)
        host = getattr(conn, "railsfab_host", None)
        raise RailsfabError(
            f"verification through {'nginx' if app.nginx else f':{port}'} failed: " +
            ", ".join(f"{k} -> {v}" for k, v in codes.items()),
            host=host.name if host else None, step=step,
            fix=f"check {layer}: {paths.server_log} and /var/log/nginx/error.log on the host",
        )
    return ", ".join(f"{k} 200" for k in codes)
