"""The third example app, as a new user deploys it from its git repository, with no file of
it written for railsfab: Rails 7.2 on Debian 13 hosts, esbuild + Sass builds (package.json),
no database.yml in git (DATABASE_URL), its own S3 env names, force_ssl without an /up
exclusion behind HTTPS at the ALB, a welcome mail on signup (the sandbox's mail sink). Its own
sandbox (bridge rfpb0, 10.238.0.0/16), booted for this file."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.parse
import urllib.request
from email.message import Message

import pytest

from railsfab import inventory
from railsfab.report import Reporter
from railsfab.sandbox.core import Sandbox
from railsfab.sandbox.mail import messages
from tests.conftest import example_sandbox, provisioned_deploy, run_fab
from tests.upload import NoRedirect, png, upload


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    with example_sandbox(tmp_path_factory.mktemp("pinboard"), "pinboard", stage="ipin",
                         bridge="rfpb0", net=238, git=True) as path:
        yield path


@pytest.fixture(scope="module")
def deployed(stage):
    return provisioned_deploy(stage)


@pytest.fixture(scope="module")
def web(stage):
    inv = inventory.load(stage)
    return {h.name: h.address for h in inv.hosts(role="web")}


def get(url: str, headers: dict | None = None) -> tuple[int, str, Message]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.build_opener(NoRedirect).open(req, timeout=15) as r:
            return r.status, r.read().decode(errors="replace"), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace"), e.headers


def test_deploys_from_git_with_its_build_and_its_own_names(deployed):
    out = re.sub(r"\s+", " ", deployed.stdout)
    assert re.search(r"local changed build [\d.]+s npm ci --prefer-offline --no-audit --no-fund "
                     r"&& npm run build && npm run build:css: \d+ files in app/assets/builds/",
                     out), out
    assert ("it reads region from AWS_S3_REGION, bucket from AWS_S3_BUCKET_NAME, endpoint from "
            "AWS_S3_ENDPOINT, which railsfab sets to the stage's") in out
    assert re.search(r"migrate [\d.]+s RAILS_ENV=production db:migrate \(on itest@", out), out
    assert "users: https://pinboard.example.test/" in out


def test_the_albs_health_check_gets_200_and_the_app_still_forces_ssl(deployed, web):
    # the ALB's own health check: plain HTTP, no X-Forwarded-Proto
    assert get(f"http://{web['web1']}/up")[0] == 200
    code, _, headers = get(f"http://{web['web1']}/pins", {"X-Forwarded-Proto": "http"})
    assert code == 301 and headers["Location"].startswith("https://")


def test_check_is_green_on_every_layer(deployed, stage):
    r = run_fab(stage, "check")
    assert r.returncode == 0, r.stdout
    assert r.stdout.count("all layers healthy") == 2


def test_a_pin_written_on_one_host_is_seen_with_its_image_on_the_other(deployed, web):
    image = png(5, 4)
    path = upload(web["web1"], "Harbour at dusk", image, resource="pins", model="pin")
    assert re.fullmatch(r"/pins/\d+", path)
    code, index, _ = get(f"http://{web['web2']}/")  # a database page, from the other host
    assert code == 200 and "Harbour at dusk" in index
    code, page, _ = get(f"http://{web['web2']}{path}")
    src = re.search(r'<img alt="Harbour at dusk" class="pin-image" src="([^"]+)"', page).group(1)
    code, _, headers = get(urllib.parse.urljoin(f"http://{web['web2']}/", src))
    assert code == 302  # Active Storage's redirect mode: to the object in S3
    with urllib.request.urlopen(headers["Location"], timeout=15) as r:
        assert r.read() == image


def test_the_built_javascript_and_css_are_served(deployed, web):
    _, page, _ = get(f"http://{web['web2']}/pins/new")
    js = re.search(r'src="(/assets/application-[0-9a-f]+\.js)"', page).group(1)
    css = re.search(r'href="(/assets/application-[0-9a-f]+\.css)"', page).group(1)
    code, body, _ = get(f"http://{web['web1']}{js}")
    assert code == 200 and "attachCounters" in body
    code, body, _ = get(f"http://{web['web1']}{css}")
    assert code == 200 and ".pin-image" in body and "$accent" not in body  # Sass, compiled


def signup(address: str, name: str, email: str) -> int:
    with urllib.request.build_opener(NoRedirect).open(f"http://{address}/signup",
                                                       timeout=15) as r:
        form = r.read().decode()
        cookie = "; ".join(c.split(";", 1)[0] for c in r.headers.get_all("Set-Cookie") or [])
    token = re.search(r'name="authenticity_token" value="([^"]+)"', form).group(1)
    data = urllib.parse.urlencode({"authenticity_token": token, "user[name]": name,
                                   "user[email]": email}).encode()
    req = urllib.request.Request(f"http://{address}/users", data=data, method="POST",
                                 headers={"Cookie": cookie})
    try:
        with urllib.request.build_opener(NoRedirect).open(req, timeout=15) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_signup_sends_the_welcome_mail_to_the_sandboxs_sink(deployed, stage, web):
    assert signup(web["web2"], "Ann", "ann@example.test") == 302
    maildir = Sandbox(inventory.load(stage), Reporter(quiet=True)).maildir
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        sent = [m for m in messages(maildir) if "ann@example.test" in m.to]
        if sent:
            break
        time.sleep(0.5)
    assert sent, "no mail reached the sink"
    assert sent[0].subject == "Welcome to Pinboard, Ann"
    assert "https://pinboard.example.test/pins/new" in sent[0].body
    r = run_fab(stage, "sandbox.mail")
    assert "Welcome to Pinboard, Ann" in r.stdout, r.stdout + r.stderr


def test_a_second_deploy_builds_and_changes_nothing(deployed, stage):
    r = run_fab(stage, "deploy")
    assert r.returncode == 0 and "0 changed" in r.stdout, r.stdout
    assert re.search(r"ok\s+build\s+[\d.]+s\s+\d+ files in app/assets/builds/, built before",
                     r.stdout), r.stdout
