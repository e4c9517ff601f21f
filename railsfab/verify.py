"""The post-deploy check, run on the host: the health path, `/` and one asset through nginx
(or, on a stage without nginx, straight from the app server's port), as a client sees them.

What fails is named: a 404 on the health path means the app has no such route; a redirect
to https means the app forces SSL and railsfab was not told that clients come through TLS.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from railsfab import onhost, remote
from railsfab.errors import RailsfabError
from railsfab.text import printable

if TYPE_CHECKING:
    from railsfab.ops.desired import Serving

TIMEOUT = 60
REDIRECTS = ("301", "302", "307", "308")


def serving(conn, s: Serving, *, step: str = "verify") -> str:
    """Wait (bounded) until all answer 200; return a summary or raise naming the cause."""
    app = s.app
    port = app.http_port
    env = {"BASE": f"http://127.0.0.1{'' if port == 80 else f':{port}'}",
           "HEALTH": app.health_path, "PUBLIC": f"{s.paths.current}/public",
           "PROTO": "https" if s.https else "", "TIMEOUT": str(TIMEOUT),
           "LOG": s.paths.rails_log(app.rails_env), "USER_": app.run_user}
    assign = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    out = remote.sh(conn, f"sudo -n env {assign} sh -s", step=step,
                    stdin=onhost.load("verify.sh").encode(), timeout=TIMEOUT + 30).stdout
    answers, logged = {}, ""
    for line in out.strip().splitlines():
        if line.startswith("error "):
            logged = printable(line.removeprefix("error ").strip())
            continue
        path, _, rest = line.partition(" ")
        code, _, location = rest.partition(" ")
        answers[path] = (code, printable(location))
    bad = {p: a for p, a in answers.items() if a[0] != "200"}
    if not bad:
        return ", ".join(f"{p} 200" for p in answers)
    host = getattr(conn, "railsfab_host", None)
    where = "nginx" if app.nginx else f":{port}"
    raise RailsfabError(
        f"verification through {where} failed: "
        + ", ".join(f"{p} -> {c}" + (f" {loc}" if loc else "") for p, (c, loc) in answers.items())
        + (f"\nthe app logged: {logged}" if logged else ""),
        host=host.name if host else None, step=step, fix=_fix(s, answers, logged))


def _fix(s: Serving, answers: dict[str, tuple[str, str]], logged: str = "") -> str:
    app = s.app
    code, location = answers.get(app.health_path, ("000", ""))
    if code in REDIRECTS and location.startswith("https://"):
        return force_ssl_fix(s)
    if code == "404":
        return no_health_route_fix(app.health_path)
    codes = {c for c, _ in answers.values()}
    failing = [p for p, (c, _) in answers.items() if c.startswith("5") and c not in
               ("502", "503", "504")]
    if failing and logged:
        return (f"the release raises on {', '.join(failing)} (the error above, from "
                f"{s.paths.rails_log(app.rails_env)}): fix it in the app, then deploy again")
    slow = [p for p, (c, _) in answers.items() if c == "000"]
    if slow and codes - {"000"} <= {"200"}:
        return (f"{', '.join(slow)} gave no answer within 10 s while the rest answered: a "
                f"request the app does not finish (see {s.paths.rails_log(app.rails_env)} and "
                f"{s.paths.server_log})")
    front = "nginx" if app.nginx else f"{s.server.name} on :{app.http_port}"
    layer = (f"{s.server.name} (nginx answers 502)" if "502" in codes
             else "the app" if "500" in codes else front)
    return (f"check {layer}: {s.paths.server_log} and /var/log/nginx/error.log on the host; "
            "`fab check` names the broken layer")


def force_ssl_fix(s) -> str:
    """`s`: anything that knows whether clients come through TLS (`.https`)."""
    if s.https:
        return ("the app redirects even requests that came through TLS "
                "(X-Forwarded-Proto: https): check config.force_ssl / ssl_options")
    return ("the app forces SSL (config.force_ssl): say so in hosts.yaml (app.force_ssl: true, "
            "or aws.certificate_arn for HTTPS at the ALB) and railsfab sends "
            "X-Forwarded-Proto: https; for the ALB's plain-HTTP health check add "
            "config.assume_ssl = true (Rails >= 7.1) or exclude the health path: "
            "config.ssl_options = { redirect: { exclude: ->(r) { r.path == \"/up\" } } }")


def alb_health_fix(s) -> str:
    """The ALB's health check is redirected. `s`: the check's Context (`.https`, and
    `.front.nginx`: nginx's site treats a request without X-Forwarded-Proto as https in HTTPS
    stages)."""
    if s.https and s.front.nginx:
        return ("`fab deploy`: railsfab's nginx site passes X-Forwarded-Proto: https for "
                "requests that come without one (only the ALB's health check does); this "
                "host's site is not that one")
    if s.https:
        return ("with Puma alone in front (app.nginx: false) the ALB asks the app directly: add "
                "config.assume_ssl = true (Rails >= 7.1) or exclude the health path: "
                "config.ssl_options = { redirect: { exclude: ->(r) { r.path == \"/up\" } } }")
    return force_ssl_fix(s)


def no_health_route_fix(path: str) -> str:
    return (f"the app has no route {path}: add `get \"up\" => \"rails/health#show\"` (Rails >= "
            f"7.1), or for older Rails `get \"up\", to: proc {{ [200, {{}}, [\"OK\"]] }}` in "
            f"config/routes.rb, or set app.health_path in hosts.yaml to a path the app "
            f"answers with 200")
