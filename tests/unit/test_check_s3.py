"""`fab check`'s S3 layer when the bucket policy keeps the controller out (vpc_endpoint_only):
it asks only for the bucket, and says so, instead of failing on a denied round trip."""

from __future__ import annotations

import json

import pytest
import yaml

from railsfab import diagnose, inventory, stack


@pytest.fixture
def inv(tmp_path, monkeypatch):
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(k, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)

    def load(**aws):
        doc = {"default_stage": "prod", "stages": {"prod": {
            "hosts": [{"name": "web1", "address": "198.51.100.7"}],
            "app": {"name": "shop", "source": "../shop", "deploy_to": "/srv/shop"},
            "aws": {"region": "ap-northeast-1", "bucket": "shop-up", **aws}}}}
        (tmp_path / "hosts.yaml").write_text(yaml.safe_dump(doc))
        return inventory.load(tmp_path / "hosts.yaml")
    return load


def test_round_trip_or_bucket_only(inv):
    from moto import mock_aws

    with mock_aws():
        import boto3

        s3 = boto3.client("s3", region_name="ap-northeast-1")
        s3.create_bucket(Bucket="shop-up", CreateBucketConfiguration={
            "LocationConstraint": "ap-northeast-1"})
        assert diagnose.s3_round_trip(inv()) == {"bucket": "shop-up"}
        # moto denies every object call under this policy, as AWS denies the controller.
        s3.put_bucket_policy(Bucket="shop-up", Policy=json.dumps(
            stack.bucket_policy("shop-up", "vpce-1", endpoint_only=True)))
        assert "error" in diagnose.s3_round_trip(inv())
        only = diagnose.s3_round_trip(inv(vpc_endpoint_only=True))
        assert only["said"].startswith("shop-up exists; its objects are reachable only "
                                       "through the VPC endpoint")
        missing = diagnose.s3_round_trip(inv(vpc_endpoint_only=True, bucket="not-there"))
        assert "404" in missing["error"] or "Not Found" in missing["error"]
