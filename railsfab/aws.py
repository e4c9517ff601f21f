"""AWS calls over boto3 clients built from the stage's settings (region, endpoint_url).

The same code serves real AWS and the sandbox's moto endpoint: only the stage settings
differ. Lookups go by tag before anything is created (moto, unlike AWS, duplicates some
resources on a repeated create).
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import threading
from dataclasses import dataclass, field
from functools import cached_property

from railsfab.inventory import Inventory

TAG = "railsfab:stage"


@dataclass
class Clients:
    """boto3 clients of one stage, from one boto3 session (its loaders and credentials are
    shared, so each further client is cheap). boto3 is imported only when a stage calls
    AWS: commands that do not pay nothing for it."""

    region: str
    endpoint_url: str | None
    sandbox: bool
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @cached_property
    def _session(self):
        import boto3

        return boto3.session.Session()

    def client(self, service: str, **config):
        from botocore.config import Config

        # An unreachable endpoint should fail in seconds, not after boto3's default 60 s
        # connect timeout times its retries.
        kwargs = {"region_name": self.region, "config": Config(
            connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"},
            **config)}
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        if self.sandbox:
            # moto accepts any key; never let a developer's real credentials reach it.
            kwargs.update(aws_access_key_id="testing", aws_secret_access_key="testing")
        with self._lock:  # a boto3 session is not thread-safe; its clients are
            return self._session.client(service, **kwargs)

    @cached_property
    def ec2(self):
        return self.client("ec2")

    @cached_property
    def elbv2(self):
        return self.client("elbv2")

    @cached_property
    def s3(self):
        return self.client("s3")

    @cached_property
    def cloudformation(self):
        return self.client("cloudformation")


def clients(inv: Inventory) -> Clients:
    """The stage's clients, one set per loaded stage: each boto3 client costs ~0.1-0.3 s to
    make (its service model is read from JSON), so a command makes each one once."""
    aws = inv.stage.aws
    endpoint = aws.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    key = (aws.region, endpoint, inv.stage.sandbox is not None)
    with _CLIENTS_LOCK:
        made = inv.__dict__.get("_aws_clients")
        if made is None or made[0] != key:
            made = inv.__dict__["_aws_clients"] = (key, Clients(*key))
    return made[1]


_CLIENTS_LOCK = threading.Lock()


def _tags(stage: str, name: str) -> list[dict]:
    return [{"Key": TAG, "Value": stage}, {"Key": "Name", "Value": name}]


def _by_tag(stage: str, name: str) -> list[dict]:
    return [{"Name": f"tag:{TAG}", "Values": [stage]}, {"Name": "tag:Name", "Values": [name]}]


def ensure_sandbox_network(c: Clients, stage: str, cidr: str,
                           hosts: list[tuple[str, str]]) -> tuple[bool, dict]:
    """The EC2 side of the sandbox in moto: a VPC with the sandbox's CIDR, two subnets in two
    AZs (an ALB needs two), a route table, and one instance record per host carrying the
    host's private IP, so instance targets and lookups by IP work as on EC2."""
    ec2 = c.ec2
    changed = False
    vpcs = ec2.describe_vpcs(Filters=_by_tag(stage, f"{stage}-vpc"))["Vpcs"]
    if vpcs:
        vpc = vpcs[0]["VpcId"]
    else:
        vpc = ec2.create_vpc(CidrBlock=cidr, TagSpecifications=[
            {"ResourceType": "vpc", "Tags": _tags(stage, f"{stage}-vpc")}])["Vpc"]["VpcId"]
        changed = True
    # the second and third /24 of the sandbox's network (10.x.1.0/24, 10.x.2.0/24 of a /16)
    blocks = list(itertools.islice(ipaddress.ip_network(cidr).subnets(new_prefix=24), 1, 3))
    subnets = []
    for az, block in zip(("a", "c"), blocks, strict=True):
        name = f"{stage}-subnet-{az}"
        found = ec2.describe_subnets(Filters=_by_tag(stage, name))["Subnets"]
        if found:
            subnets.append(found[0]["SubnetId"])
            continue
        subnets.append(ec2.create_subnet(
            VpcId=vpc, CidrBlock=str(block),
            AvailabilityZone=f"{c.region}{az}",
            TagSpecifications=[{"ResourceType": "subnet", "Tags": _tags(stage, name)}],
        )["Subnet"]["SubnetId"])
        changed = True
    rts = ec2.describe_route_tables(Filters=_by_tag(stage, f"{stage}-rt"))["RouteTables"]
    if rts:
        rt = rts[0]["RouteTableId"]
    else:
        rt = ec2.create_route_table(VpcId=vpc, TagSpecifications=[
            {"ResourceType": "route-table", "Tags": _tags(stage, f"{stage}-rt")}]
        )["RouteTable"]["RouteTableId"]
        for sn in subnets:
            ec2.associate_route_table(RouteTableId=rt, SubnetId=sn)
        changed = True
    image = None
    instances = {}
    for name, address in hosts:
        found = [i for r in ec2.describe_instances(Filters=[
            *_by_tag(stage, name), {"Name": "instance-state-name", "Values": ["running"]}]
        )["Reservations"] for i in r["Instances"]]
        if found:
            instances[name] = found[0]["InstanceId"]
            continue
        subnet = subnets[0] if ipaddress.ip_address(address) in blocks[0] else subnets[1]
        # moto accepts any AMI id but lists real-looking ones; slow, so only when needed.
        image = image or ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        instances[name] = ec2.run_instances(
            ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.small",
            SubnetId=subnet, PrivateIpAddress=address,
            TagSpecifications=[{"ResourceType": "instance", "Tags": _tags(stage, name)}],
        )["Instances"][0]["InstanceId"]
        changed = True
    return changed, {"vpc_id": vpc, "subnet_ids": subnets, "route_table_ids": [rt],
                     "instances": instances}


def ensure_sandbox_certificate(c: Clients, domain: str) -> tuple[bool, str]:
    """What ACM holds on AWS for a stage with HTTPS at the ALB: an issued certificate for its
    domain. In the sandbox's endpoint, a self-signed one is imported (nothing validates it
    there); on AWS people request theirs in ACM."""
    acm = c.client("acm")
    for summary in acm.list_certificates(CertificateStatuses=["ISSUED"])["CertificateSummaryList"]:
        if summary["DomainName"] == domain:
            return False, f"{domain}: {summary['CertificateArn']}"
    cert, key = _self_signed(domain)
    arn = acm.import_certificate(Certificate=cert, PrivateKey=key)["CertificateArn"]
    return True, f"{domain}: self-signed, imported as {arn}"


def _self_signed(domain: str) -> tuple[bytes, bytes]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))
