"""`fab check`'s on-host probe (railsfab/onhost/check.py): its pure helpers, and how it ships."""

from __future__ import annotations

import ast
import importlib
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from railsfab import remote
from railsfab.onhost import check, check_app, check_sys, check_why, dblogin, dbquery
from railsfab.paths import Paths
from railsfab.secrets import env_file_text

GOLDEN = Path(__file__).parent / "golden"
# railsfab.diagnose re-exports the function probe(), which hides the module of that name
probe_module = importlib.import_module("railsfab.diagnose.probe")


def test_env_file_as_deploy_writes_it_reads_back():
    text = env_file_text({"RAILS_ENV": "production", "DATABASE_HOST": "10.0.0.5",
                          "DATABASE_PORT": "3307", "EMPTY": ""})
    assert check.parse_env(text.splitlines(keepends=True)) == {
        "RAILS_ENV": "production", "DATABASE_HOST": "10.0.0.5", "DATABASE_PORT": "3307",
        "EMPTY": ""}


def test_env_file_comments_blanks_and_quotes():
    lines = ["# DATABASE_HOST=commented\n", "\n", "  A=\"double\"  \n", "B=x=y\n", "=nokey\n",
             "C\n"]
    assert check.parse_env(lines) == {"A": "double", "B": "x=y", "C": ""}


def test_process_environ():
    data = b"RAILS_ENV=staging\0PATH=/usr/bin\0junk\0X=a=b\0"
    assert check.parse_environ(data) == {"RAILS_ENV": "staging", "PATH": "/usr/bin",
                                         "X": "a=b"}


def test_listen_line_of_the_rendered_unicorn_and_puma_configs():
    assert check.server_listen((GOLDEN / "unicorn.rb").read_text()) == \
        "/srv/shop/shared/tmp/sockets/unicorn.sock"
    # puma's bind carries the socket's mode and backlog as a query: not part of the path
    assert check.server_listen((GOLDEN / "puma.rb").read_text()) == \
        "/srv/shop/shared/tmp/sockets/puma.sock"


def test_listen_line_only_at_the_start_of_a_line():
    assert check.server_listen('# listen "/old.sock"\nworker_processes 2\n') is None
    assert check.server_listen('bind "tcp://0.0.0.0:3000"\n') is None
    assert check.server_listen("") is None


def test_upstream_of_the_rendered_nginx_site():
    assert check.site_upstream((GOLDEN / "nginx-site.conf").read_text()) == \
        "/srv/shop/shared/tmp/sockets/unicorn.sock"
    assert check.site_upstream("server unix:/run/a.sock;") == "/run/a.sock"
    assert check.site_upstream("proxy_pass http://127.0.0.1:3000;") is None


@pytest.mark.parametrize("module", [check, check_app, check_sys, check_why, dblogin, dbquery])
def test_probe_uses_only_the_standard_library_and_runs_nothing_at_import(module):
    tree = ast.parse(Path(module.__file__).read_text())
    guarded = [n for n in tree.body if isinstance(n, ast.Try)]
    # the one import of another on-host file: on the host its text comes first instead
    assert all(isinstance(h.type, ast.Name) and h.type.id == "ImportError"
               for t in guarded for h in t.handlers)
    unguarded = [n for n in tree.body if not isinstance(n, ast.Try)]
    imported = {a.name.split(".")[0] for top in unguarded for n in ast.walk(top)
                if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for top in unguarded for n in ast.walk(top)
                 if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
    # top level: docstring, imports, constants and definitions only
    for node in unguarded:
        assert isinstance(node, (ast.Expr, ast.Import, ast.ImportFrom, ast.Assign,
                                 ast.AnnAssign, ast.FunctionDef, ast.ClassDef)), \
            ast.dump(node)[:80]
        if isinstance(node, ast.Expr):
            assert isinstance(node.value, ast.Constant), "only the docstring"


def test_script_is_the_files_then_one_call_of_main_with_the_params():
    params = {"env_file": "/etc/railsfab/a'b\".env", "port": 80, "nginx": True, "ü": "\n"}
    script = probe_module.script(params)
    program, call = script.rstrip("\n").rsplit("\n", 1)
    assert call.startswith("main(json.loads(")
    assert program.startswith("from __future__ import annotations\n")
    assert program.count("from __future__") == 1  # one program, its future import first
    assert program.index("def login(") < program.index("def unit_state(") < \
        program.index("def release_state(") < program.index("def main(")
    captured = {}
    namespace = {"__name__": "__main__"}
    exec(compile(program, "<stdin>", "exec"), namespace)  # as python3 - runs it
    assert callable(namespace["login"])
    namespace["main"] = lambda P: captured.update(P)
    exec(compile(call, "call", "exec"), namespace)
    assert captured == params


def test_probe_sends_the_script_to_python_as_root_and_reads_its_json(monkeypatch):
    sent = {}

    def sh(conn, script, *, step, stdin=None, **kw):
        sent.update(script=script, stdin=stdin.decode())
        return SimpleNamespace(stdout='{"front": {"nginx": false}}')

    monkeypatch.setattr(remote, "sh", sh)
    app = SimpleNamespace(rails_env="staging", nginx=False, http_port=3000,
                          health_path="/healthz", database=None, run_user="shop")
    inv = SimpleNamespace(stage=SimpleNamespace(app=app, https=True,
                                                aws=SimpleNamespace(bucket=None)))
    paths = Paths("shop", "/srv/shop", "puma")
    assert probe_module.probe(None, inv, paths) == {"front": {"nginx": False}}
    assert sent["script"] == "sudo -n python3 -"
    p = json.loads(json.loads(sent["stdin"].rsplit("main(json.loads(", 1)[1][:-3]))
    assert (p["port"], p["nginx"], p["socket"], p["app_log"], p["health"], p["proto"]) == \
        (3000, False, "/srv/shop/shared/tmp/sockets/puma.sock",
         "/srv/shop/shared/log/staging.log", "/healthz", "https")


def test_the_probes_files_define_no_name_twice():
    """On the host they are one program, one namespace: a name defined twice would be the
    later file's everywhere."""
    seen: dict[str, str] = {}
    for name in probe_module.PROGRAM:
        tree = ast.parse((Path(check.__file__).parent / name).read_text())
        for node in tree.body:
            names = ([node.name] if isinstance(node, (ast.FunctionDef, ast.ClassDef)) else
                     [t.id for t in node.targets if isinstance(t, ast.Name)]
                     if isinstance(node, ast.Assign) else [])
            for n in names:
                assert n not in seen, f"{n} in {name} and {seen[n]}"
                seen[n] = name
