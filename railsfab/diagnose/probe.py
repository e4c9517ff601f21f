"""Reading a host for `fab check`: the on-host probe in one SSH round trip; S3's round trip
and the instances' security groups from the controller."""

from __future__ import annotations

import json

from railsfab import onhost, remote
from railsfab.inventory import Host, Inventory
from railsfab.paths import LINKED_DIRS, Paths

# one program: check.py calls the others (dblogin.login and its dbquery, check_sys, check_app)
PROGRAM = ("dblogin.py", "dbquery.py", "check_db.py", "check_sys.py", "manifest.py",
           "check_app.py", "check_why.py", "check.py")


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
        "app_log": paths.rails_log(app.rails_env),
        "server_log": paths.server_log,
        "server_stdout": paths.server_stdout,
        "app_user": app.run_user,
        "deploy_to": paths.deploy_to,
        "shared": paths.shared,
        "releases": paths.releases,
        "linked_dirs": list(LINKED_DIRS),
        "unit_file": paths.unit,
        # the files the app server writes: its user must be able to
        "app_writes": [paths.server_log, paths.server_stdout,
                       paths.rails_log(app.rails_env)],
        "nginx": app.nginx,
        "port": app.http_port,
        # the database settings the release uses, asked of its own Ruby and activerecord
        "dbconfig_rb": onhost.load("dbconfig.rb"),
        # S3 with the app's own settings, from the host (when the stage has a bucket)
        "s3check_rb": onhost.load("s3check.rb") if inv.stage.aws.bucket else "",
        "rendered": [paths.unit, paths.server_config] + ([paths.nginx_site] if app.nginx else []),
        "bundle_env": paths.bundler_env(paths.current),
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
    """Put, read back and delete a small object in the stage's bucket (only ask for the
    bucket when its policy keeps the controller out)."""
    from railsfab import aws

    a = inv.stage.aws
    bucket = a.bucket
    s3 = aws.clients(inv).s3
    if a.vpc_endpoint_only and a.apply_bucket_policy:
        # The bucket policy denies object calls from outside the VPC endpoint, as this one
        # is: only the bucket itself can be asked about from here.
        try:
            s3.head_bucket(Bucket=bucket)
        except Exception as exc:  # noqa: BLE001 - any failure is the evidence
            return {"bucket": bucket, "error": str(exc)[:200]}
        return {"bucket": bucket, "said": f"{bucket} exists; its objects are reachable only "
                                          "through the VPC endpoint (not tried from here)"}
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


def security_groups(inv: Inventory, hosts: list[Host],
                    out: dict[str, str] | None = None) -> dict[str, dict] | None:
    """Each host's instance: its security groups with their ingress rules, beside the
    stack's ALB and app groups, read from the controller in three EC2 calls. None when the
    stage has no stack; a stack without those outputs raises. `out`: the stack's outputs,
    when the caller read them already."""
    from railsfab import aws, outputs
    from railsfab.instances import Instances

    a = inv.stage.aws
    if not a.stack_name:
        return None
    out = out or outputs.required(inv, ("AppSecurityGroupId", "AlbSecurityGroupId"))
    base = {"alb_sg": out.get("AlbSecurityGroupId"), "app_sg": out["AppSecurityGroupId"],
            "admin_cidr": a.admin_cidr, "ssh_anywhere_allowed": a.allow_ssh_from_anywhere}
    c = aws.clients(inv)
    ec2 = c.ec2
    try:
        found = Instances(inv, c)
        ids = {h.name: found.id(h) for h in hosts}
        known = sorted({i for i in ids.values() if i})
        instances = {i["InstanceId"]: i for r in (ec2.describe_instances(
            InstanceIds=known)["Reservations"] if known else []) for i in r["Instances"]}
        gids = sorted({g["GroupId"] for i in instances.values()
                       for g in i.get("SecurityGroups", [])})
        groups = {g["GroupId"]: g for g in (ec2.describe_security_groups(
            GroupIds=gids)["SecurityGroups"] if gids else [])}
    except Exception as exc:  # noqa: BLE001 - the layer reports it as the evidence
        return {h.name: {**base, "error": str(exc)[:200]} for h in hosts}
    result = {}
    for h in hosts:
        inst = instances.get(ids[h.name] or "")
        if inst is None:
            result[h.name] = {"skip": f"no EC2 instance found for {h.address}: its security "
                                      "groups cannot be read (set its instance_id)"}
            continue
        result[h.name] = {**base, "instance": inst["InstanceId"], "groups": [
            groups[g["GroupId"]] for g in inst.get("SecurityGroups", []) if g["GroupId"] in groups]}
    return result
