"""`app.artifact: s3`: the release archive built once on the controller, put once in the
stage's bucket under releases/<sha256>.tar.gz (content addressed: a release already there is
not sent again), and fetched by each host with a presigned URL that lives a few minutes:
no AWS credentials on the hosts, and the controller's uplink carries one archive whatever the
number of hosts. Each host checks the archive's sha256 before it unpacks anything, so an
object changed in the bucket is refused, naming the host and the step.

Artifacts follow keep_releases: after a deploy that made a release, the newest ones stay.
"""

from __future__ import annotations

import base64
import hashlib
import shlex
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from railsfab import onhost, remote
from railsfab.errors import RailsfabError
from railsfab.inventory import Inventory

if TYPE_CHECKING:
    from railsfab.executor import HostRun
    from railsfab.ops.base import Plan
    from railsfab.ops.desired import Desired
    from railsfab.report import Reporter

PREFIX = "releases/"
ARCHIVE = ".railsfab-artifact.tar.gz"  # in the new release folder, while it is checked
DIGEST_FILE = ".railsfab-artifact"  # in a release made from an artifact: its sha256
URL_SECONDS = 300  # a presigned URL only has to start the download


class Artifact:
    def __init__(self, inv: Inventory) -> None:
        self.inv = inv
        self.bucket = inv.stage.aws.bucket
        self.keep = inv.stage.app.keep_releases
        self.digest: str | None = None
        self.size = 0
        self._lock = threading.RLock()
        self._s3 = None

    @property
    def s3(self):
        with self._lock:
            if self._s3 is None:
                from railsfab import aws  # boto3: only when a release goes through the bucket

                # SigV4: presigned URLs of every region (SigV2 is refused by the newer ones)
                self._s3 = aws.clients(self.inv).client("s3", signature_version="s3v4")
            return self._s3

    @property
    def key(self) -> str:
        return f"{PREFIX}{self.digest}.tar.gz"

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.key if self.digest else PREFIX}"

    def put(self, archive: bytes, release: str) -> tuple[bool, str]:
        """The archive in the bucket, once: (changed, what was done)."""
        with self._lock:
            self.digest, self.size = hashlib.sha256(archive).hexdigest(), len(archive)
            size = f"{self.size / 1024:.0f} KiB"
            try:
                if self._exists():
                    return False, f"{self.where} already there ({size})"
                # S3 checks the body against this checksum: a corrupted upload is refused.
                self.s3.put_object(
                    Bucket=self.bucket, Key=self.key, Body=archive,
                    ChecksumSHA256=base64.b64encode(bytes.fromhex(self.digest)).decode(),
                    ContentType="application/gzip",
                    Metadata={"release": release, "app": self.inv.stage.app.name})
            except Exception as exc:  # noqa: BLE001 - botocore's errors, said with a fix
                raise self._failed(exc, "put") from None
            return True, f"uploaded {self.where} ({size}, once for every host)"

    def _exists(self) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.s3.head_object(Bucket=self.bucket, Key=self.key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def url(self) -> str:
        """A presigned GET of the archive, valid for URL_SECONDS: a secret while it lives."""
        return self.s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self.key},
            ExpiresIn=URL_SECONDS)

    def prune(self) -> tuple[bool, str]:
        """Artifacts beyond keep_releases go, oldest first; never the one just deployed."""
        try:
            pages = self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=PREFIX)
            objs = sorted((o for p in pages for o in p.get("Contents", [])),
                          key=lambda o: o["LastModified"], reverse=True)
            others = [o["Key"] for o in objs if o["Key"] != self.key]
            gone = others[max(0, self.keep - 1):]
            for i in range(0, len(gone), 1000):
                self.s3.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": k} for k in gone[i:i + 1000]], "Quiet": True})
        except Exception as exc:  # noqa: BLE001
            raise self._failed(exc, "clean up") from None
        kept = min(len(objs), self.keep)
        return bool(gone), (f"kept {kept} in s3://{self.bucket}/{PREFIX}"
                            + (f", removed {len(gone)}" if gone else ""))

    def _failed(self, exc: Exception, verb: str) -> RailsfabError:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        a = self.inv.stage.aws
        if code == "NoSuchBucket":
            fix = (f"`fab aws.provision --stage {self.inv.stage_name}` creates it, or set "
                   f"aws.bucket; or use app.artifact: upload")
        elif code in ("AccessDenied", "403"):
            fix = ("the controller's credentials must allow s3:PutObject, GetObject, ListBucket "
                   f"and DeleteObject on {PREFIX}*"
                   + ("; aws.vpc_endpoint_only denies requests from outside the VPC's "
                      "endpoint: run the deploy from inside the VPC, or use artifact: upload"
                      if a.vpc_endpoint_only else ""))
        else:
            fix = "check the stage's aws settings and credentials, then deploy again"
        return RailsfabError(f"cannot {verb} the release archive at {self.where}: {exc}",
                             step="artifact", fix=fix)


def upload(d: Desired, plans: dict[str, dict[str, Plan]], rep: Reporter, *,
           dry: bool) -> None:
    """Before any host prepares: the archive in the bucket, when some host makes a release."""
    if d.artifact is None or dry or not any(p["prepare"].changes("release")
                                            for p in plans.values()):
        return
    with rep.step("local", "artifact") as s:
        s.set(*d.artifact.put(d.release_archive(), d.release))


def prune(d: Desired, rep: Reporter) -> None:
    """After a deploy whose release verified everywhere: old artifacts go (keep_releases)."""
    if d.artifact is None or d.artifact.digest is None:
        return
    with rep.step("local", "artifacts") as s:
        s.set(*d.artifact.prune())


def fetch(d: Desired, unpack: Callable[[str], str]) -> Callable[[HostRun], str]:
    """The release step's work with an artifact: the host fetches and checks the archive
    (railsfab/onhost/fetch_release.sh), then the script `unpack(digest)` unpacks it."""
    def run(r: HostRun) -> str:
        a = d.artifact
        env = {"APP_USER": d.app.deploy_user, "REL": d.paths.release(d.release),
               "DIGEST": a.digest, "ARCHIVE": ARCHIVE}
        assigns = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        script = onhost.load("fetch_release.sh")
        res = remote.sh(r.conn, f"sudo -n env {assigns} sh -c {shlex.quote(script)}",
                        step="release", stdin=curl_config(a.url()), warn=True, timeout=960)
        if res.exited != 0:
            raise fetch_failed(r.name, a, res)
        remote.sh(r.conn, unpack(a.digest), sudo=True, step="release", on_line=r.progress)
        return (f"{d.release} fetched from s3://{a.bucket}/{PREFIX}{a.digest[:12]}…, sha256 "
                "verified, unpacked")
    return run


def curl_config(url: str) -> bytes:
    """curl's --config text for the URL (quoted as curl's config files quote)."""
    return ('url = "' + url.replace("\\", "\\\\").replace('"', '\\"') + '"\n').encode()


def fetch_failed(host: str, a: Artifact, res: remote.Result) -> RailsfabError:
    said = (res.stderr.strip() or res.stdout.strip()).splitlines()[-3:]
    if res.exited == 11:
        got = res.stdout.strip().rsplit(" ", 1)[-1]
        return RailsfabError(
            f"the release archive {a.where} is not the one railsfab built: refused, nothing "
            f"unpacked\nits sha256 {got}\nexpected   {a.digest}", host=host, step="release",
            fix=(f"the object was changed in the bucket after it was uploaded: find who may "
                 f"write to s3://{a.bucket}/{PREFIX}, delete the object (`aws s3 rm "
                 f"{a.where}`), then deploy again (it is uploaded anew)"))
    if res.exited == 10:
        return RailsfabError(
            f"could not fetch the release archive {a.where}: " + " ".join(said), host=host,
            step="release", fix=("the host must reach S3 (the VPC's S3 endpoint, or a NAT) "
                                 "and keep the right time (the URL is presigned for "
                                 f"{URL_SECONDS} s); then deploy again"))
    return RailsfabError(f"preparing the release folder failed (exit {res.exited}): "
                         + " ".join(said), host=host, step="release",
                         fix="see the message above, then deploy again")
