"""`fab aws.provision`: the stage's AWS infrastructure as one CloudFormation stack.

CloudFormation owns create/update/rollback; we render the template, create the stack or
propose a change set, stream the stack's events as progress, and apply the pieces the
sandbox's engine lacks (AWS::S3::BucketPolicy, some properties) with boto3, idempotently.
`fab aws.destroy` is railsfab.destroy.
"""

from __future__ import annotations

import json
import time

from botocore.exceptions import ClientError

from railsfab import aws, render
from railsfab import outputs as stack_outputs
from railsfab.errors import ConfigError, RailsfabError
from railsfab.inventory import Inventory
from railsfab.report import Reporter

TERMINAL_OK = {"CREATE_COMPLETE", "UPDATE_COMPLETE"}
TERMINAL_BAD = {"CREATE_FAILED", "ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "UPDATE_ROLLBACK_COMPLETE",
                "UPDATE_ROLLBACK_FAILED", "DELETE_FAILED", "UPDATE_FAILED"}
POLL = 1.0
TIMEOUT = 1800


def names(inv: Inventory) -> dict[str, str]:
    base = f"{inv.stage.app.name}-{inv.stage_name}"[:28]
    return {"alb": base, "target_group": f"{base}-tg"[:32]}


def network_ids(inv: Inventory) -> dict:
    """VPC, subnets and route tables: from hosts.yaml, or on a sandbox stage from the ids
    `fab sandbox.up` got from its AWS endpoint."""
    a = inv.stage.aws
    ids = {"vpc_id": a.vpc_id, "subnet_ids": a.subnet_ids, "route_table_ids": a.route_table_ids}
    if inv.stage.sandbox and not a.vpc_id:
        f = inv.state_dir / "sandbox" / inv.stage_name / "aws.json"
        if not f.exists():
            raise RailsfabError("the sandbox's AWS records are missing", step="provision",
                                fix="run `fab sandbox.up` first")
        ids = json.loads(f.read_text())
    missing = [k for k in ("vpc_id", "subnet_ids", "route_table_ids") if not ids.get(k)]
    if missing:
        raise ConfigError(f"{inv.path.name}: stages.{inv.stage_name}.aws needs "
                          f"{', '.join(missing)} to provision the stack")
    return ids


def ends_tls(inv: Inventory) -> bool:
    """Does the ALB end TLS (an HTTPS:443 listener with the stage's certificate)?"""
    a = inv.stage.aws
    return bool(a.certificate_arn or a.certificate_domain)


def template(inv: Inventory) -> str:
    env = render.environment(inv.root)
    return render.render(env, "stack.yaml.j2", app=inv.stage.app, aws=inv.stage.aws,
                         stage=inv.stage_name, names=names(inv), https=ends_tls(inv),
                         endpoint_policy=endpoint_policy(inv),
                         sandbox=inv.stage.sandbox is not None)


def certificate_arn(inv: Inventory) -> str:
    """The stage's ACM certificate: its ARN as given, or the issued one for its domain."""
    a = inv.stage.aws
    if a.certificate_arn:
        return a.certificate_arn
    acm = aws.clients(inv).client("acm")
    pages = acm.get_paginator("list_certificates").paginate(CertificateStatuses=["ISSUED"])
    for page in pages:
        for c in page["CertificateSummaryList"]:
            if c["DomainName"] == a.certificate_domain:
                return c["CertificateArn"]
    raise ConfigError(f"{inv.path.name}: stages.{inv.stage_name}.aws.certificate_domain: no "
                      f"issued ACM certificate for {a.certificate_domain} in {a.region}",
                      fix="request one in ACM (DNS validation) or set aws.certificate_arn")


def parameters(inv: Inventory) -> list[dict]:
    a = inv.stage.aws
    if not (a.stack_name and a.bucket and a.admin_cidr):
        raise ConfigError(f"{inv.path.name}: stages.{inv.stage_name}.aws needs stack_name, "
                          "bucket and admin_cidr to provision")
    ids = network_ids(inv)
    values = {"VpcId": ids["vpc_id"], "SubnetIds": ",".join(ids["subnet_ids"]),
              "RouteTableIds": ",".join(ids["route_table_ids"]), "AdminCidr": a.admin_cidr,
              "BucketName": a.bucket}
    if ends_tls(inv):
        values["CertificateArn"] = certificate_arn(inv)
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]


def describe(cf, name: str) -> dict | None:
    try:
        return cf.describe_stacks(StackName=name)["Stacks"][0]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise


def outputs(inv: Inventory) -> dict[str, str]:
    a = inv.stage.aws
    if not a.stack_name:
        return {}
    stack = describe(aws.clients(inv).cloudformation, a.stack_name)
    if not stack:
        return {}
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def http_only(inv: Inventory) -> str | None:
    """What provision warns of on a real stage whose ALB has no certificate."""
    a = inv.stage.aws
    if inv.stage.sandbox or a.certificate_arn or a.certificate_domain:
        return None
    return ("the ALB answers HTTP only: logins and cookies cross the internet in clear "
            "text; give aws.certificate_arn (an ACM certificate) and run `fab aws.provision` "
            "again")


def provision(inv: Inventory, rep: Reporter) -> bool:
    """Create or update the stack; True if anything changed."""
    c = aws.clients(inv)
    cf = c.cloudformation
    name = inv.stage.aws.stack_name
    body, params = template(inv), parameters(inv)
    changed = False
    with rep.step("aws", "stack") as s:
        stack = describe(cf, name)
        if stack is None or stack["StackStatus"] == "ROLLBACK_COMPLETE":
            if stack:
                cf.delete_stack(StackName=name)
                wait(cf, name, rep, {"DELETE_COMPLETE"}, since=time.time() - 5)
            since = time.time() - 5
            cf.create_stack(StackName=name, TemplateBody=body, Parameters=params,
                            Capabilities=["CAPABILITY_IAM"], OnFailure="ROLLBACK",
                            Tags=[{"Key": aws.TAG, "Value": inv.stage_name}])
            wait(cf, name, rep, TERMINAL_OK, since=since)
            changed = True
            s.change(f"{name} created")
        else:
            changed = _update(cf, name, body, params, rep)
            s.set(changed, f"{name} updated" if changed else f"{name} up to date, no changes")
    out, repaired = stack_outputs.kept(inv, cf, body, params, rep)
    return _after_stack(inv, c, out, rep) or changed or repaired


def _after_stack(inv: Inventory, c: aws.Clients, out: dict, rep: Reporter) -> bool:
    """Properties the sandbox's CloudFormation engine does not apply (or loses on an
    update), and the bucket policy; on AWS the stack already set the others and these
    find nothing to do."""
    from railsfab.rolling import ensure_health_check_path

    changed = False
    with rep.step("aws", "target group") as s:
        path = inv.stage.app.health_path
        before = ensure_health_check_path(c.elbv2, out["TargetGroupArn"], path)
        delay = _ensure_tg_attributes(c.elbv2, out["TargetGroupArn"],
                                      inv.stage.aws.deregistration_delay)
        s.set(delay or before is not None,
              f"health check {path}" + (f" (was {before})" if before else "")
              + f", deregistration delay {inv.stage.aws.deregistration_delay} s")
        changed |= s.changed
    with rep.step("aws", "public access") as s:
        s.set(_ensure_public_access_block(c.s3, out["BucketName"]), "all public access blocked")
        changed |= s.changed
    endpoint = endpoint_id(inv, out)
    with rep.step("aws", "endpoint policy") as s:
        extra = len(inv.stage.aws.endpoint_buckets)
        what = f"only {out['BucketName']}" + (f" and {extra} endpoint bucket(s)" if extra else "")
        if endpoint is None:
            s.ok(f"{what}: no S3 gateway endpoint found to check")
        else:
            s.set(_ensure_endpoint_policy(c.ec2, endpoint, endpoint_policy(inv)),
                  f"{endpoint}: {what}")
        changed |= s.changed
    with rep.step("aws", "bucket policy") as s:
        policy = bucket_policy(out["BucketName"], endpoint,
                               inv.stage.aws.vpc_endpoint_only)
        what = "deny non-TLS" + (", deny outside the VPC endpoint"
                                 if inv.stage.aws.vpc_endpoint_only else "")
        if not inv.stage.aws.apply_bucket_policy:
            s.ok(f"{what}: rendered, not applied (apply_bucket_policy: false)")
        else:
            s.set(_ensure_bucket_policy(c.s3, out["BucketName"], policy), what)
        changed |= s.changed
    return changed


def _update(cf, name, body, params, rep) -> bool:
    """A change set shows what would change; an empty one means no change (AWS and moto)."""
    cs_name = f"railsfab-{int(time.time())}"
    cf.create_change_set(StackName=name, ChangeSetName=cs_name, TemplateBody=body,
                         Parameters=params, Capabilities=["CAPABILITY_IAM"],
                         ChangeSetType="UPDATE")
    deadline = time.monotonic() + 300
    while True:
        cs = cf.describe_change_set(StackName=name, ChangeSetName=cs_name)
        if cs["Status"] in ("CREATE_COMPLETE", "FAILED") or time.monotonic() > deadline:
            break
        time.sleep(POLL)
    reason = cs.get("StatusReason", "")
    try:
        cf.delete_change_set(StackName=name, ChangeSetName=cs_name)
    except ClientError:
        pass
    if cs["Status"] == "FAILED":
        # AWS and moto both fail a change set that "didn't contain changes".
        if "didn't contain changes" in reason or "No updates" in reason:
            return False
        raise RailsfabError(f"change set failed: {reason}", step="stack")
    # Anything else is a change, even with an empty Changes list (moto lists only template
    # differences, not parameter ones).
    for ch in cs.get("Changes", []):
        rc = ch.get("ResourceChange", {})
        rep.info(f"    {rc.get('Action', '?'):<8} {rc.get('LogicalResourceId', '?')} "
                 f"({rc.get('ResourceType', '?')}) replacement={rc.get('Replacement', '-')}")
    since = time.time() - 5
    # update_stack rather than execute_change_set: moto keeps stale outputs and parameters
    # after executing a change set; on AWS the two are equivalent here.
    cf.update_stack(StackName=name, TemplateBody=body, Parameters=params,
                    Capabilities=["CAPABILITY_IAM"])
    wait(cf, name, rep, TERMINAL_OK, since=since)
    return True


def wait(cf, name: str, rep: Reporter, done: set[str], since: float) -> None:
    """Stream the stack's events until it reaches one of `done` (or fails)."""
    seen: set[str] = set()
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            events = cf.describe_stack_events(StackName=name)["StackEvents"]
        except ClientError as exc:
            if "DELETE_COMPLETE" in done and "does not exist" in str(exc):
                return
            raise
        for ev in reversed(events):
            if ev["EventId"] in seen or ev["Timestamp"].timestamp() < since:
                continue
            seen.add(ev["EventId"])
            reason = f" - {ev['ResourceStatusReason']}" if ev.get("ResourceStatusReason") else ""
            rep.info(f"    {ev['ResourceStatus']:<20} {ev['LogicalResourceId']} "
                     f"({ev['ResourceType']}){reason}")
        stack = describe(cf, name)
        status = stack["StackStatus"] if stack else "DELETE_COMPLETE"
        if status in done:
            return
        if status in TERMINAL_BAD:
            raise RailsfabError(f"stack {name} ended in {status}", step="stack",
                                fix="read the failed events above; fix the template or "
                                    "settings, then `fab aws.provision` again")
        if time.monotonic() > deadline:
            raise RailsfabError(f"stack {name} still {status} after {TIMEOUT} s", step="stack")
        time.sleep(POLL)


def bucket_policy(bucket: str, endpoint: str | None, endpoint_only: bool) -> dict:
    arn = f"arn:aws:s3:::{bucket}"
    statements = [{
        "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [arn, f"{arn}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }]
    if endpoint_only and endpoint:
        statements.append({
            "Sid": "DenyOutsideVpcEndpoint", "Effect": "Deny", "Principal": "*",
            "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            "Resource": f"{arn}/*",
            "Condition": {"StringNotEquals": {"aws:SourceVpce": endpoint}},
        })
    return {"Version": "2012-10-17", "Statement": statements}


def endpoint_policy(inv: Inventory) -> dict:
    """The S3 gateway endpoint's policy: object access and listing on the stage's bucket and
    aws.endpoint_buckets, nothing else."""
    buckets = [inv.stage.aws.bucket or "", *inv.stage.aws.endpoint_buckets]
    arns = [f"arn:aws:s3:::{b}" for b in buckets]
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "StageBucketsObjects", "Effect": "Allow", "Principal": "*",
         "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
         "Resource": [f"{a}/*" for a in arns]},
        {"Sid": "StageBucketsList", "Effect": "Allow", "Principal": "*",
         "Action": ["s3:ListBucket"], "Resource": arns},
    ]}


def endpoint_id(inv: Inventory, out: dict) -> str | None:
    """The stack's S3 gateway endpoint. The sandbox's engine drops it from the stack's
    outputs when an update touches it; the endpoint on the stage's route tables is then it."""
    if out.get("VpcEndpointId"):
        return out["VpcEndpointId"]
    ids = network_ids(inv)
    found = aws.clients(inv).ec2.describe_vpc_endpoints(Filters=[
        {"Name": "vpc-id", "Values": [ids["vpc_id"]]},
        {"Name": "service-name", "Values": [f"com.amazonaws.{inv.stage.aws.region}.s3"]},
        {"Name": "vpc-endpoint-state", "Values": ["available", "pending"]},
    ])["VpcEndpoints"]
    ours = [e for e in found if set(e.get("RouteTableIds", [])) & set(ids["route_table_ids"])]
    ours.sort(key=lambda e: e.get("CreationTimestamp") or 0)
    return ours[-1]["VpcEndpointId"] if ours else None


def _ensure_endpoint_policy(ec2, endpoint: str, policy: dict) -> bool:
    current = ec2.describe_vpc_endpoints(VpcEndpointIds=[endpoint])["VpcEndpoints"][0]
    try:
        same = _canon(json.loads(current.get("PolicyDocument") or "{}")) == _canon(policy)
    except ValueError:  # the sandbox's engine stores what CloudFormation gave it unparsed
        same = False
    if same:
        return False
    ec2.modify_vpc_endpoint(VpcEndpointId=endpoint, PolicyDocument=json.dumps(policy))
    return True


def _canon(doc):
    """A policy as AWS may hand it back: a one-item list and its item mean the same."""
    if isinstance(doc, dict):
        return {k: _canon(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return _canon(doc[0]) if len(doc) == 1 and not isinstance(doc[0], dict) else [
            _canon(x) for x in doc]
    return doc


def _ensure_tg_attributes(elbv2, arn: str, delay: int) -> bool:
    attrs = {a["Key"]: a["Value"] for a in
             elbv2.describe_target_group_attributes(TargetGroupArn=arn)["Attributes"]}
    if attrs.get("deregistration_delay.timeout_seconds") == str(delay):
        return False
    elbv2.modify_target_group_attributes(TargetGroupArn=arn, Attributes=[
        {"Key": "deregistration_delay.timeout_seconds", "Value": str(delay)}])
    return True


PUBLIC_ACCESS_BLOCK = {"BlockPublicAcls": True, "IgnorePublicAcls": True,
                       "BlockPublicPolicy": True, "RestrictPublicBuckets": True}


def _ensure_public_access_block(s3, bucket: str) -> bool:
    try:
        current = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    except ClientError:
        current = None
    if current == PUBLIC_ACCESS_BLOCK:
        return False
    s3.put_public_access_block(Bucket=bucket,
                               PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK)
    return True


def _ensure_bucket_policy(s3, bucket: str, policy: dict) -> bool:
    try:
        current = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    except ClientError:
        current = None
    if current == policy:
        return False
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    return True

