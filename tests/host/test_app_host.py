"""A healthy app host, as a specification (pytest-testinfra)."""

from __future__ import annotations

import json
import re


def test_front_door_is_listening(host, app):
    """nginx on :80 in front; without nginx, the app server itself on its port."""
    if not app.nginx:
        assert host.socket(f"tcp://0.0.0.0:{app.port}").is_listening
        return
    assert host.package("nginx").is_installed
    nginx = host.service("nginx")
    assert nginx.is_enabled and nginx.is_running
    assert host.socket("tcp://0.0.0.0:80").is_listening


def test_only_the_apps_site_is_enabled(host, app, paths):
    """The default site never shadows the app; without nginx, no site of the app is left
    (it would answer 502 for a server that is gone)."""
    assert not host.file("/etc/nginx/sites-enabled/default").exists
    if not app.nginx:
        assert not host.file(paths.nginx_site_enabled).exists
        return
    assert host.file(paths.nginx_site_enabled).linked_to == paths.nginx_site


def test_app_server_service_is_active(host, paths):
    unit = host.service(paths.unit_name)
    assert unit.is_enabled and unit.is_running


def test_pid_file_names_a_live_master_owned_by_the_app_user(host, app, paths, server):
    with host.sudo():
        pid = host.file(paths.pid).content_string.strip()
        proc = host.process.get(pid=int(pid))
    assert proc.user == app.run_user
    assert re.match(server.master_pattern, proc.args), proc.args
    assert host.run(f"systemctl show -p MainPID --value {paths.unit_name}").stdout.strip() == pid


def test_configured_number_of_workers(host, app, paths):
    with host.sudo():
        pid = host.file(paths.pid).content_string.strip()
    workers = host.process.filter(ppid=int(pid))
    assert len([w for w in workers if "worker" in w.args]) == app.workers


def test_socket_is_live_and_the_path_nginx_uses(host, app, paths):
    if not app.nginx:  # the app server binds its TCP port only
        with host.sudo():
            assert not host.socket(f"unix://{paths.socket}").is_listening
        return
    with host.sudo():
        sock = host.file(paths.socket)
        assert sock.is_socket
        site = host.file(paths.nginx_site).content_string
        assert f"server unix:{paths.socket} " in site
        assert host.socket(f"unix://{paths.socket}").is_listening
        # nginx's user can connect: the request reaches the app.
        r = host.run(f"runuser -u www-data -- curl -s -o /dev/null -w '%{{http_code}}' "
                     f"--unix-socket {paths.socket} http://localhost/up")
    assert r.stdout == "200"


def test_current_points_to_an_existing_good_release(host, paths):
    current = host.file(paths.current)
    assert current.is_symlink
    target = current.linked_to
    assert host.file(target).is_directory
    meta = json.loads(host.file(f"{target}/.railsfab-release.json").content_string)
    assert meta["state"] == "good"


def test_env_file_is_root_only(host, paths):
    with host.sudo():
        f = host.file(paths.env_file)
        assert f.user == "root" and f.mode == 0o600


def test_pages_and_assets_answer_200_through_nginx_or_the_app_port(host, app, paths):
    base = "http://127.0.0.1" if app.nginx else f"http://127.0.0.1:{app.port}"

    def code(path: str) -> str:
        return host.run(f"curl -s -o /dev/null -w '%{{http_code}}' {base}{path}").stdout

    assert code("/") == "200"
    assert code("/up") == "200"
    css = host.run(f"ls {paths.current}/public/assets/ | grep -m1 '\\.css$'").stdout.strip()
    assert css and code(f"/assets/{css}") == "200"


def test_database_reachable_from_the_app_host(host, paths):
    with host.sudo():
        env = host.file(paths.env_file).content_string
    db = dict(re.findall(r"^(DATABASE_HOST|DATABASE_PORT)='([^']*)'", env, re.M))
    if "DATABASE_HOST" not in db:
        return
    port = db.get("DATABASE_PORT", "3306")
    r = host.run(f"timeout 3 bash -c 'echo > /dev/tcp/{db['DATABASE_HOST']}/{port}'")
    assert r.rc == 0, f"cannot reach {db['DATABASE_HOST']}:{port}"
