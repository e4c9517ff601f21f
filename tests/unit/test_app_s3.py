"""The S3 layer tries the app's own settings from each host (its storage.yml's service, its
env file, its aws-sdk-s3): a bucket that differs from the stage's is named, with the fix."""

from __future__ import annotations

import copy

from railsfab.diagnose import evaluate, first_broken
from tests.unit.test_diagnose import HEALTHY, PATHS

STAGE_S3 = {"bucket": "sample-uploads", "said": "put/get/delete on sample-uploads"}


def judged(app_s3: dict):
    d = copy.deepcopy(HEALTHY)
    d["s3"] = app_s3
    return evaluate(d, workers=2, app_user="deploy", paths=PATHS, s3=STAGE_S3)


def test_the_apps_own_bucket_that_is_not_there_is_named_with_the_stages():
    v = first_broken(judged({"service": "amazon", "bucket": "nope-uploads",
                             "region": "ap-northeast-1", "error": "NoSuchBucket: The "
                             "specified bucket does not exist"}))
    assert v.layer == "S3"
    assert v.detail == ("the app's own S3 settings fail from this host (service 'amazon' in "
                        "config/storage.yml: bucket nope-uploads, region ap-northeast-1): "
                        "NoSuchBucket: The specified bucket does not exist; the stage's bucket "
                        "is sample-uploads")
    assert v.fix == (f"fab deploy (it writes sample-uploads into {PATHS.env_file} under the "
                     "names config/storage.yml reads)")


def test_healthy_says_it_used_the_apps_own_settings():
    vs = judged({"service": "amazon", "bucket": "sample-uploads", "region": "ap-northeast-1",
                 "endpoint": "http://10.0.0.1:5055", "ms": 412})
    v = next(x for x in vs if x.layer == "S3")
    assert v.status == "ok" and v.detail == (
        "put/get/delete with the app's own settings (service 'amazon' in config/storage.yml: "
        "bucket sample-uploads, region ap-northeast-1, endpoint http://10.0.0.1:5055, 412 ms)")
    skipped = next(x for x in judged({"service": "local", "skip": "not S3"}) if x.layer == "S3")
    assert skipped.detail == "put/get/delete on sample-uploads"  # the controller's trip
