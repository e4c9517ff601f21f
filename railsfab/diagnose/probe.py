"""Reading a host for `fab check`: the on-host probe in one SSH round trip, and S3's round
trip from the controller."""

from __future__ import annotations

import json

from railsfab import onhost, remote
from railsfab.inventory import Inventory
from railsfab.paths import LINKED_DIRS, Paths

# one program: check.py calls the others (dblogin.login and its dbquery, check_sys, check_app)
PROGRAM = ("dblogin.py", "dbquery.py", "check_sys.py", "check_app.py", "check.py")


def params(inv: Inventory, paths: Paths) -> dict:
    """What the probe (railsfab/onhost/check.py) reads: `main(P)`'s P."""
    app = inv.stage.app
    return {
        "adapter": app.database.adapter if app.database else "",
        "health": app.health_path,
        "proto": "https" if inv.stage.https else "",
        "env_file": paths.env_file,
        "pid": paths.pid,
        "server_config": paths.server_config,
        "site": paths.nginx_site,
        "current": paths.current,
        "socket": paths.socket,
        "unit": paths.unit_name,
        "default_sites": list(paths.nginx_default_sites),
        "rails_env": app.rails_env,
        "alb_host": "railsfab-check.elb.amazonaws.com",
        "app_log": f"{paths.shared}/log/{app.rails_env}.log",
        "server_log": paths.server_log,
        "server_stdout": paths.server_stdout,
        "deploy_user": app.deploy_user,
        "deploy_to": paths.deploy_to,
        "shared": paths.shared,
        "releases": paths.releases,
        "linked_dirs": list(LINKED_DIRS),
        "unit_file": paths.unit,
        # the files the app server writes: its user must be able to
        "app_writes": [paths.server_log, paths.server_stdout,
                       f"{paths.shared}/log/{app.rails_env}.log"],
        "nginx": app.nginx,
        "port": app.http_port,
    }


def script(p: dict) -> str:
    """The program for `python3 -`: onhost/check.py's text, then one line calling its main."""
    return onhost.python_call(PROGRAM, "main", p).decode()


def probe(conn, inv: Inventory, paths: Paths) -> dict:
    """The host's state as onhost/check.py prints it, read as root in one round trip."""
    stdin = onhost.python_call(PROGRAM, "main", params(inv, paths))
    r = remote.sh(conn, "sudo -n python3 -", step="check", stdin=stdin, timeout=60)
    return json.loads(r.stdout)


def s3_round_trip(inv: Inventory) -> dict:
    """Put, read back and delete a small object in the stage's bucket."""
    from railsfab import aws

    bucket = inv.stage.aws.bucket
    s3 = aws.clients(inv).s3
    key = "railsfab-check/probe.txt"
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=b"railsfab check")
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        s3.delete_object(Bucket=bucket, Key=key)
        if body != b"railsfab check":
            return {"bucket": bucket, "error": "read back different bytes"}
    except Exception as exc:  # noqa: BLE001 - any failure is the evidence
        return {"bucket": bucket, "error": str(exc)[:200]}
    return {"bucket": bucket}
