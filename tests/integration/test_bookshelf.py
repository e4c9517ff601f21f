"""The second example app, as a new user would deploy it: Rails 7.2 on Debian 13 hosts,
PostgreSQL, force_ssl behind HTTPS at the ALB, /healthz, its own storage.yml, development and
test gems, seeds. Its own sandbox (bridge rfbk0, 10.236.0.0/16), booted for this file."""

from __future__ import annotations

import re

import pytest

from railsfab import aws, inventory, stack
from tests.conftest import example_sandbox, provisioned_deploy, run_fab
from tests.upload import png, upload


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    with example_sandbox(tmp_path_factory.mktemp("bookshelf"), "bookshelf", stage="ibook",
                         bridge="rfbk0", net=236) as path:
        yield path


@pytest.fixture(scope="module")
def deployed(stage):
    return provisioned_deploy(stage)


def test_deploys_with_no_edit_beyond_hosts_yaml(deployed):
    out = deployed.stdout
    assert "debian 13" in out
    assert re.search(r"ruby\s+\d+\.\ds\s+Ruby 3\.3\.\d+ \(ruby3\.3.*\) meets the Gemfile's "
                     r"ruby ~> 3\.3\.0", out)
    assert "the app's own config/storage.yml is kept (S3 service 'amazon')" in out
    assert re.search(r"bundle .*without development, test", out)
    assert re.search(r"verify .*/healthz 200", out)


def test_the_alb_ends_tls_and_redirects_http(deployed, stage):
    inv = inventory.load(stage)
    c = aws.clients(inv)
    lb = [x for x in c.elbv2.describe_load_balancers()["LoadBalancers"]
          if x["LoadBalancerName"] == stack.names(inv)["alb"]][0]
    listeners = {ls["Port"]: ls for ls in c.elbv2.describe_listeners(
        LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]}
    assert listeners[443]["Protocol"] == "HTTPS"
    assert listeners[443]["Certificates"][0]["CertificateArn"] == stack.certificate_arn(inv)
    assert listeners[80]["DefaultActions"][0]["Type"] == "redirect"
    tg = c.elbv2.describe_target_groups(TargetGroupArns=[
        stack.outputs(inv)["TargetGroupArn"]])["TargetGroups"][0]
    assert tg["HealthCheckPath"] == "/healthz"


def test_check_is_green_on_every_layer_with_a_database_login(deployed, stage):
    r = run_fab(stage, "check")
    assert r.returncode == 0, r.stdout
    assert r.stdout.count("all layers healthy") == 2
    assert "logged in as itest@10.236.1.20:5432/itest_production (17." in r.stdout


def test_seeds_fill_the_database_and_covers_land_in_s3(deployed, stage):
    r = run_fab(stage, "rails", "--", "db:seed")
    assert r.returncode == 0, r.stdout + r.stderr
    count = run_fab(stage, "rails", "--only", "web2", "--", "runner", "puts Book.count")
    assert count.stdout.split() == ["3"], count.stdout + count.stderr
    inv = inventory.load(stage)
    keys = aws.clients(inv).s3.list_objects_v2(Bucket=inv.stage.aws.bucket).get("Contents", [])
    assert len(keys) >= 3  # one cover per seeded book


def test_a_second_deploy_changes_nothing(deployed, stage):
    r = run_fab(stage, "deploy")
    assert r.returncode == 0 and "0 changed" in r.stdout, r.stdout


def test_an_upload_through_the_form_lands_in_s3(deployed, stage):
    inv = inventory.load(stage)
    web1 = inv.hosts(only="web1")[0].address
    s3 = aws.clients(inv).s3
    before = len(s3.list_objects_v2(Bucket=inv.stage.aws.bucket).get("Contents", []))
    path = upload(web1, "Uploaded", png(), resource="books", model="book", file_field="cover")
    assert re.fullmatch(r"/books/\d+", path)
    after = s3.list_objects_v2(Bucket=inv.stage.aws.bucket).get("Contents", [])
    assert len(after) == before + 1
