"""Rendered files: golden copies, and the paths every file must agree on."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from railsfab import render
from railsfab.errors import RailsfabError
from railsfab.inventory import App
from railsfab.paths import Paths

GOLDEN = Path(__file__).parent / "golden"
APP = App(name="shop", source=".", deploy_to="/srv/shop", workers=3, timeout=30,
          client_max_body_size="25m")
PATHS = Paths(APP.name, APP.deploy_to, APP.app_server)
FILES = {"unicorn.rb.j2": "unicorn.rb", "unicorn.service.j2": "unicorn.service",
         "nginx-site.conf.j2": "nginx-site.conf"}


def rendered(template: str) -> str:
    env = render.environment()
    return render.render(env, template, app=APP, paths=PATHS, upstream="shop_app", https=False)


@pytest.mark.parametrize("template", FILES)
def test_golden_render(template):
    """Set RAILSFAB_UPDATE_GOLDEN=1 to rewrite the golden files after a deliberate change."""
    text = rendered(template)
    golden = GOLDEN / FILES[template]
    if os.environ.get("RAILSFAB_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_in_https_stages_a_request_without_a_scheme_is_https_to_the_app():
    """Only the ALB's own health check comes without X-Forwarded-Proto when clients come
    through TLS: an app that forces SSL must not redirect it (the target group wants 200)."""
    env = render.environment()
    site = render.render(env, "nginx-site.conf.j2", app=APP, paths=PATHS, upstream="shop_app",
                         https=True)
    assert re.search(r'map \$http_x_forwarded_proto \$shop_app_proto \{\s+default '
                     r'\$http_x_forwarded_proto;\s+""\s+https;', site)
    assert '""      $scheme;' in rendered("nginx-site.conf.j2")


def test_nginx_upstream_is_unicorns_listen_socket():
    upstream = re.search(r"server unix:(\S+) ", rendered("nginx-site.conf.j2")).group(1)
    listen = re.search(r'^listen "([^"]+)"', rendered("unicorn.rb.j2"), re.M).group(1)
    assert upstream == listen == "/srv/shop/shared/tmp/sockets/unicorn.sock"


def test_pid_file_is_the_units_pidfile():
    pid = re.search(r'^pid "([^"]+)"', rendered("unicorn.rb.j2"), re.M).group(1)
    pidfile = re.search(r"^PIDFile=(\S+)", rendered("unicorn.service.j2"), re.M).group(1)
    assert pid == pidfile == "/srv/shop/shared/tmp/pids/unicorn.pid"


def test_unit_starts_the_rendered_config_in_the_stage_env():
    unit = rendered("unicorn.service.j2")
    assert "-c /srv/shop/shared/config/unicorn.rb -E production" in unit
    assert "EnvironmentFile=/etc/railsfab/shop.env" in unit
    assert "RAILS_ENV=production" in unit
    assert "User=shop" in unit and "SupplementaryGroups=deploy" in unit


def test_site_is_the_default_server_with_alb_friendly_keepalive():
    site = rendered("nginx-site.conf.j2")
    assert "listen 80 default_server;" in site and "server_name _;" in site
    assert "root /srv/shop/current/public;" in site
    keepalive = int(re.search(r"keepalive_timeout (\d+)s;", site).group(1))
    assert keepalive > 60  # the ALB's idle timeout
    assert "server_tokens off;" in site
    assert "client_max_body_size 25m;" in site
    assert "try_files $uri/index.html $uri @app;" in site


def test_before_exec_points_bundler_at_current():
    assert 'ENV["BUNDLE_GEMFILE"] = "/srv/shop/current/Gemfile.railsfab"' in \
        rendered("unicorn.rb.j2")


def test_missing_setting_is_a_clear_error(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates/unicorn.rb.j2").write_text("workers {{ app.wokers }}\n")
    env = render.environment(tmp_path)
    with pytest.raises(RailsfabError, match="templates/unicorn.rb.j2: .*wokers"):
        render.render(env, "unicorn.rb.j2", app=APP, paths=PATHS, upstream="x")


def test_template_syntax_error_names_file_and_line(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates/nginx-site.conf.j2").write_text("a\n{% if %}\n")
    env = render.environment(tmp_path)
    with pytest.raises(RailsfabError, match=r"templates/nginx-site.conf.j2:2: "):
        render.render(env, "nginx-site.conf.j2", app=APP, paths=PATHS, upstream="x")


def test_storage_yml_uses_path_style_only_with_an_endpoint():
    from railsfab.inventory import AWS

    env = render.environment()
    real = render.render(env, "storage.yml.j2", app=APP, stage="production",
                         aws=AWS(region="ap-northeast-1", bucket="shop-uploads"))
    assert "bucket: shop-uploads" in real and "region: ap-northeast-1" in real
    assert "endpoint" not in real and "access_key" not in real
    sandbox = render.render(env, "storage.yml.j2", app=APP, stage="sandbox",
                            aws=AWS(region="ap-northeast-1", bucket="bkt",
                                    endpoint_url="http://10.231.0.1:5055"))
    assert "endpoint: http://10.231.0.1:5055\n  force_path_style: true" in sandbox


# --- puma: the same paths context, its own config and unit -------------------------------

PUMA = APP.model_copy(update={"app_server": "puma", "threads": 4})
PUMA_PATHS = Paths(PUMA.name, PUMA.deploy_to, "puma")
PUMA_FILES = {("puma.rb.j2", True): "puma.rb", ("puma.service.j2", True): "puma.service",
              ("puma.service.j2", False): "puma-simple.service"}


def puma_rendered(template: str, app=PUMA, notify: bool = True) -> str:
    from railsfab import appserver

    files = appserver.Puma(app, PUMA_PATHS).files(render.environment(), notify=notify)
    return {"puma.rb.j2": files["server_config"], "puma.service.j2": files["unit"],
            "nginx-site.conf.j2": files.get("site")}[template]


@pytest.mark.parametrize("template,notify", PUMA_FILES)
def test_puma_golden_render(template, notify):
    text = puma_rendered(template, notify=notify)
    golden = GOLDEN / PUMA_FILES[(template, notify)]
    if os.environ.get("RAILSFAB_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_nginx_upstream_is_pumas_bind_socket_and_the_unit_tracks_its_pid_file():
    upstream = re.search(r"server unix:(\S+) ", puma_rendered("nginx-site.conf.j2")).group(1)
    config = puma_rendered("puma.rb.j2")
    bind = re.search(r'^bind "unix://([^"?]+)\?mode=0660', config, re.M).group(1)
    assert upstream == bind == "/srv/shop/shared/tmp/sockets/puma.sock"
    pid = re.search(r'^pidfile "([^"]+)"', config, re.M).group(1)
    unit = puma_rendered("puma.service.j2")
    assert pid == re.search(r"^PIDFile=(\S+)", unit, re.M).group(1)
    assert "ExecStart=/usr/bin/bundle exec puma -C /srv/shop/shared/config/puma.rb" in unit


def test_puma_config_allows_phased_restarts_from_current():
    config = puma_rendered("puma.rb.j2")
    assert 'directory "/srv/shop/current"' in config
    assert "workers 3" in config and "threads 4, 4" in config
    assert not re.search(r"^\s*preload_app", config, re.M)  # phased restarts need it off


def test_puma_unit_speaks_notify_with_a_watchdog_only_when_the_bundle_can():
    unit = puma_rendered("puma.service.j2")
    assert "Type=notify" in unit and "WatchdogSec=60" in unit
    assert "RAILS_MAX_THREADS=4" in unit  # the database pool follows the thread count
    simple = puma_rendered("puma.service.j2", notify=False)
    assert "Type=simple" in simple and "WatchdogSec" not in simple


def test_puma_alone_binds_the_port_serves_static_files_and_renders_no_site():
    from railsfab import appserver

    alone = PUMA.model_copy(update={"nginx": False, "port": 3000})
    files = appserver.Puma(alone, PUMA_PATHS).files(render.environment(), notify=True)
    assert 'bind "tcp://0.0.0.0:3000?backlog=1024"' in files["server_config"]
    assert "unix://" not in files["server_config"]
    assert "RAILS_SERVE_STATIC_FILES=1" in files["unit"]
    assert "site" not in files


@pytest.mark.parametrize("gemfile,lock,expected", [
    ('gem "puma"\ngem "sd_notify"\n', None, True),
    ('gem "puma"\n', None, False),
    ('gem "puma"\n', "GEM\n  specs:\n    puma (6.4.2)\n      nio4r (~> 2.0)\n", True),
    ('gem "puma"\n', "GEM\n  specs:\n    puma (5.6.5)\n      nio4r (~> 2.0)\n", False),
])
def test_notify_support_is_read_from_the_bundle(tmp_path, gemfile, lock, expected):
    from railsfab import appserver

    (tmp_path / "Gemfile").write_text(gemfile)
    if lock:
        (tmp_path / "Gemfile.lock").write_text(lock)
    assert appserver.Puma(PUMA, PUMA_PATHS).notify(tmp_path) is expected


def test_the_sample_app_can_use_type_notify():
    from railsfab import appserver

    sample = Path(__file__).parents[2] / "examples/sample_app"
    assert appserver.Puma(PUMA, PUMA_PATHS).notify(sample)
    assert not appserver.Unicorn(APP, PUMA_PATHS).notify(sample)


def test_gemfile_railsfab_skips_the_groups_bundle_without_names():
    text = render.render(render.environment(), "Gemfile.railsfab.j2",
                         without=["development", "test"])
    assert "RAILSFAB_WITHOUT = %i[development test].freeze" in text
    assert 'eval_gemfile File.expand_path("Gemfile", __dir__)' in text
    assert "def group(" in text and "def gem(" in text
