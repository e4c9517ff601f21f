"""The layers `fab check` reads from AWS on the controller (the probe's data plays no part):
the S3 round trip, the host's target in the load balancer, and the security groups of the
host's instance."""

from __future__ import annotations

import ipaddress

from railsfab.diagnose.base import Context, Finding, Layer

NO_BUCKET = ("NoSuchBucket", "does not exist", "Not Found", "404")
DENIED = ("AccessDenied", "Forbidden", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch")


def s3_fix(bucket: str, error: str, who: str) -> str:
    """What S3's answer calls for: the bucket made, the permission given, or the endpoint
    reached (`who`: the identity that asked)."""
    if any(x in error for x in NO_BUCKET):
        return (f"{bucket} does not exist: fab aws.provision creates the stage's bucket "
                "(aws.bucket in hosts.yaml names it)")
    if any(x in error for x in DENIED):
        return (f"{who} may not use {bucket}: its policy must allow s3:PutObject, "
                f"s3:GetObject and s3:DeleteObject on {bucket}/* (fab aws.provision gives the "
                "instance profile that policy)")
    return f"S3 did not answer for {bucket}: the endpoint in the error must be reachable"


def s3_round_trip_failed(d: dict, ctx: Context) -> Finding | None:
    s3 = ctx.s3
    if s3.get("error"):
        return (f"round trip to {s3['bucket']} failed: {s3['error']}",
                s3_fix(s3["bucket"], s3["error"], "the identity fab check runs as"))
    return None


def app_s3_failed(d: dict, ctx: Context) -> Finding | None:
    """The app's own S3 settings (its storage.yml's service, its env file), tried from the
    host by its own aws-sdk-s3: what the app's uploads would meet."""
    s3 = d.get("s3") or {}
    if not s3.get("error"):
        return None
    where = _app_s3_said(s3)
    stage = (ctx.s3 or {}).get("bucket")
    if s3.get("bucket") and stage and s3["bucket"] != stage:
        return (f"the app's own S3 settings fail from this host ({where}): {s3['error']}; the "
                f"stage's bucket is {stage}",
                f"fab deploy (it writes {stage} into {ctx.paths.env_file} under the names "
                "config/storage.yml reads)")
    return (f"the app's own S3 settings fail from this host ({where}): {s3['error']}",
            s3_fix(s3.get("bucket") or "the bucket", s3["error"],
                   "this host's identity (its instance profile or the env file's keys)"))


def _app_s3_said(s3: dict) -> str:
    return (f"service {s3.get('service')!r} in config/storage.yml: bucket {s3.get('bucket')}"
            + (f", region {s3['region']}" if s3.get("region") else "")
            + (f", endpoint {s3['endpoint']}" if s3.get("endpoint") else ""))


class S3(Layer):
    name = "S3"
    checks = (app_s3_failed, s3_round_trip_failed)

    def applies(self, ctx):
        return ctx.s3 is not None

    def skip_reason(self, ctx):
        return "no bucket configured"

    def healthy(self, d, ctx):
        own = d.get("s3") or {}
        if own.get("bucket") and not own.get("error"):
            return (f"put/get/delete with the app's own settings ({_app_s3_said(own)}, "
                    f"{own.get('ms', '?')} ms)")
        return ctx.s3.get("said") or f"put/get/delete on {ctx.s3['bucket']}"


# What AWS's reason codes call for (TargetHealth.Reason); the description comes with it.
REASON_FIX = {
    "Target.NotRegistered": "fab deploy registers it once this host passes the local health gate",
    "Target.ResponseCodeMismatch": "the ALB's health check must ask {health} (fab "
                                   "aws.provision sets it); the layers above show what "
                                   "this host answers",
    "Target.Timeout": "the ALB gets no answer in time: the app hosts' security group must "
                      "allow port 80 from the ALB's (fab aws.provision sets it)",
    "Target.FailedHealthChecks": "the ALB cannot connect: the app hosts' security group must "
                                 "allow port 80 from the ALB's (fab aws.provision sets it)",
    "Target.InvalidState": "the instance is not running: start it, then fab deploy",
}


def target_unhealthy(d: dict, ctx: Context) -> Finding | None:
    lb = ctx.lb
    if lb.get("state") == "healthy":
        return None
    reason, said = lb.get("reason") or "", lb.get("description") or ""
    detail = f"target {lb.get('id')} is {lb.get('state')}" + (
        f": {reason}" if reason else "") + (f" ({said})" if said else "")
    return detail, REASON_FIX.get(reason, "").format(health=ctx.health)


class LoadBalancer(Layer):
    name = "load balancer"
    checks = (target_unhealthy,)

    def applies(self, ctx):
        return ctx.lb is not None

    def skip_reason(self, ctx):
        return "no target group in this stage (aws.stack_name, aws.target_group_arn)"

    def healthy(self, d, ctx):
        return f"target {ctx.lb['id']} healthy"


# --- security groups: only the ALB reaches :80, nobody in the world reaches :22 -----------

def _covers(perm: dict, port: int) -> bool:
    proto = str(perm.get("IpProtocol"))
    if proto in ("-1", "all"):
        return True
    return proto in ("tcp", "6") and perm.get("FromPort", 0) <= port <= perm.get("ToPort", 0)


def _sources(perm: dict) -> list[tuple[str, str]]:
    """Who a rule lets in, as (how the AWS CLI names that kind of source, the source)."""
    return ([("--cidr", r["CidrIp"]) for r in perm.get("IpRanges", [])]
            + [("ipv6", r["CidrIpv6"]) for r in perm.get("Ipv6Ranges", [])]
            + [("prefix list", p["PrefixListId"]) for p in perm.get("PrefixListIds", [])]
            + [("--source-group", g["GroupId"]) for g in perm.get("UserIdGroupPairs", [])])


def _rules(sg: dict, port: int):
    for g in sg["groups"]:
        for perm in g.get("IpPermissions", []):
            if _covers(perm, port):
                for kind, source in _sources(perm):
                    yield g, perm, kind, source


def _revoke(g: dict, perm: dict, kind: str, source: str) -> str:
    gid = g["GroupId"]
    if kind not in ("--cidr", "--source-group"):
        return f"remove the rule that lets {source} in from security group {gid}"
    proto = str(perm.get("IpProtocol"))
    if proto in ("-1", "all"):
        what = "--protocol all"
    else:
        low, high = perm["FromPort"], perm["ToPort"]
        what = f"--protocol {proto} --port {low}" + (f"-{high}" if high != low else "")
    return f"aws ec2 revoke-security-group-ingress --group-id {gid} {what} {kind} {source}"


def _named(g: dict) -> str:
    return f"{g['GroupId']} ({g.get('GroupName', '?')})"


def sg_unreadable(d: dict, ctx: Context) -> Finding | None:
    if ctx.sg.get("error"):
        return (f"could not read the instance's security groups: {ctx.sg['error']}",
                "the checking identity needs ec2:DescribeInstances and "
                "ec2:DescribeSecurityGroups")
    return None


def http_beyond_the_alb(d: dict, ctx: Context) -> Finding | None:
    sg = ctx.sg
    alb = sg["alb_sg"]
    found = [r for r in _rules(sg, 80) if r[2:] != ("--source-group", alb)]
    if not found:
        return None
    said = ", ".join(dict.fromkeys(f"{src} through {_named(g)}" for g, _, _, src in found))
    return (f":80 of {sg['instance']} is open to {said}, not only to the ALB's group {alb}: "
            "requests can go around the load balancer",
            f"{_revoke(*found[0])} (or detach that group from {sg['instance']}); only the "
            f"ALB's group {alb} may reach :80")


def too_broad(cidr: str) -> bool:
    """A source no admin network is: shorter than /8 (IPv4) or /32 (IPv6), 0.0.0.0/0 and
    0.0.0.0/1 alike."""
    try:
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False
    return net.prefixlen < (8 if net.version == 4 else 32)


def ssh_from_anywhere(d: dict, ctx: Context) -> Finding | None:
    sg = ctx.sg
    if sg.get("ssh_anywhere_allowed"):
        return None
    found = [r for r in _rules(sg, 22) if too_broad(r[3])]
    if not found:
        return None
    g, _, _, src = found[0]
    return (f":22 (SSH) of {sg['instance']} is open to {src} through {_named(g)}",
            f"{_revoke(*found[0])}; SSH should come from aws.admin_cidr "
            f"({sg.get('admin_cidr') or 'your network'}) only")


def app_group_missing(d: dict, ctx: Context) -> Finding | None:
    sg = ctx.sg
    ids = [g["GroupId"] for g in sg["groups"]]
    if sg["app_sg"] not in ids:
        return (f"the stack's app security group {sg['app_sg']} is not attached to "
                f"{sg['instance']} (it has {', '.join(ids) or 'none'})",
                "fab deploy attaches it (step 'sg + profile')")
    return None


class SecurityGroups(Layer):
    name = "security groups"
    checks = (sg_unreadable, http_beyond_the_alb, ssh_from_anywhere, app_group_missing)

    def applies(self, ctx):
        return ctx.sg is not None and not ctx.sg.get("skip")

    def skip_reason(self, ctx):
        return ctx.sg["skip"] if ctx.sg else "no stack in this stage: no security groups to check"

    def healthy(self, d, ctx):
        sg = ctx.sg
        ssh = [src for _, _, _, src in _rules(sg, 22)]
        return (f"{sg['instance']}: :80 only from the ALB's group {sg['alb_sg']}"
                + (f", :22 from {', '.join(dict.fromkeys(ssh))}" if ssh else ""))
