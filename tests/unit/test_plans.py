"""Every deploy step's decision as a table: facts in, change or no-change (and why) out.

No host is involved: `fresh()` is a new EC2 host, `deployed()` one where the wanted release
serves and everything is in place; each case changes one fact and names the outcome."""

from __future__ import annotations

import copy
import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from railsfab import inventory
from railsfab.deploy import ACTIVATE, FINALIZE, MIGRATE, PREPARE, plan
from railsfab.executor import Executor, HostRun
from railsfab.facts import Facts
from railsfab.ops import desired, host
from railsfab.ops.base import Change, Check, NoChange
from railsfab.ops.desired import sha
from railsfab.report import Reporter

ROOT = Path(__file__).resolve().parents[2]
INACTIVE = {"active": "inactive", "enabled": "", "load": "not-found", "main_pid": "0"}
RUNNING = {"active": "active", "enabled": "enabled", "load": "loaded", "main_pid": "4242"}


def stage(tmp_path, monkeypatch, **app) -> desired.Desired:
    monkeypatch.setenv("SECRET_KEY_BASE", "k" * 64)  # read once, by build()
    settings = {"name": "shop", "source": str(ROOT / "examples/sample_app"),
                "deploy_to": "/srv/shop", "packages": ["ruby-rails", "unicorn"], **app}
    doc = {"default_stage": "prod", "stages": {"prod": {
        "hosts": [{"name": "web1", "address": "198.51.100.7", "roles": ["web", "migrate"]}],
        "app": settings, "apt_proxy": "http://10.0.0.1:8888"}}}
    import yaml

    (tmp_path / "hosts.yaml").write_text(yaml.safe_dump(doc))
    return desired.build(inventory.load(tmp_path / "hosts.yaml"), release="20261201000000")


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:  # built once: reading the source is the slow part
        return stage(tmp_path_factory.mktemp("unicorn"), mp)


@pytest.fixture(scope="module")
def puma(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        return stage(tmp_path_factory.mktemp("puma"), mp, app_server="puma")


def fresh(d) -> Facts:
    units = {u: dict(INACTIVE) for u in (d.paths.unit_name, "nginx", host.STOCK_UNIT,
                                         *(s.paths.unit_name for s in d.retired))}
    return Facts({"lock": None, "os": {"id": "debian", "version": "12"}, "installed": {},
                  "apt_lists_age": None, "user": False, "nodes": {}, "files": {}, "texts": {},
                  "releases": {}, "current": None, "units": units})


def deployed(d, release="20261130000000") -> Facts:
    f = fresh(d).raw
    p = d.paths
    f["installed"] = {p: "1.0-1" for p in d.packages}
    f["apt_lists_age"] = 60.0
    f["user"], f["app_user"] = True, [d.app.run_user, d.app.deploy_user]
    f["nodes"] = {path: {"mode": mode, "owner": o, "group": g, "link": None, "dir": True}
                  for path, o, g, mode in host.dirs(d)}
    f["nodes"][p.env_file] = {"mode": "0600", "owner": "root", "group": "root", "link": None,
                              "dir": False}
    f["nodes"][p.nginx_site_enabled] = {"mode": "0777", "owner": "root", "group": "root",
                                        "link": p.nginx_site, "dir": False}
    f["nodes"][p.nginx_site] = {"mode": "0644", "owner": "root", "group": "root",
                                "link": None, "dir": False}
    proxy = f'Acquire::http::Proxy "{d.apt_proxy}";\n'
    f["files"] = {host.APT_PROXY_FILE: sha(proxy), p.env_file: sha(d.env_text),
                  p.server_config: sha(d.files["server_config"]), p.unit: sha(d.files["unit"]),
                  p.nginx_site: sha(d.files["site"])}
    f["texts"] = {p.server_config: d.files["server_config"], p.unit: d.files["unit"],
                  p.nginx_site: d.files["site"]}
    f["releases"] = {release: {"id": release, **d.meta("good")}}
    f["current"] = release
    f["units"][p.unit_name] = dict(RUNNING)
    f["units"]["nginx"] = dict(RUNNING, main_pid="99")
    f["nginx"] = {"loaded": 2000.0, "mtimes": dict.fromkeys(p.nginx_config, 1000.0)}
    f["units"][host.STOCK_UNIT] = {"active": "inactive", "enabled": "masked",
                                   "load": "masked", "main_pid": "0"}
    return Facts(f)


def edit(base, fn):
    """Facts made by `base(d)`, then changed by `fn(raw, d)`."""
    def make(d) -> Facts:
        f = base(d)
        raw = copy.deepcopy(f.raw)
        fn(raw, d)
        return Facts(raw)
    return make


def outcome(f: Facts, d, step: str):
    plans = plan(f, d, migrate=True)
    for phase in plans.values():
        got = phase.get(step)
        if got is not None:
            return got
    return None


def unit_of(raw, d, **state):
    raw["units"][d.paths.unit_name].update(state)


def other_unit(raw, d, **state):
    raw["units"][d.retired[0].paths.unit_name] = dict(RUNNING, **state)


def new_source(raw, d):
    raw["releases"][raw["current"]]["source"] = "an older source"


def new_gems(raw, d):
    new_source(raw, d)
    raw["releases"][raw["current"]]["gems"] = "older gems"


def node_of(path_of, **fields):
    def fn(raw, d):
        raw["nodes"][path_of(d)].update(fields)
    return fn


def file_of(path_of, value="something else"):
    def fn(raw, d):
        raw["files"][path_of(d)] = value
    return fn


def releases(*ids, current):
    def fn(raw, d):
        meta = raw["releases"][raw["current"]]
        raw["releases"] = {i: dict(meta, id=i) for i in ids}
        raw["current"] = current
    return fn


# (case, facts, step, outcome type, what the outcome says: a regex on what/reason)
CASES = [
    # apt proxy
    ("proxy missing", fresh, "apt proxy", Change, r"set http://10.0.0.1:8888"),
    ("proxy in place", deployed, "apt proxy", NoChange, r"http://10.0.0.1:8888"),
    ("proxy file differs", edit(deployed, file_of(lambda d: host.APT_PROXY_FILE)), "apt proxy",
     Change, r"set "),
    # packages
    ("nothing installed", fresh, "packages", Change, r"install nginx ruby ruby-bundler curl "
     r"ruby-rails unicorn$"),
    ("all installed", deployed, "packages", NoChange, r"^6 installed$"),
    ("one package missing", edit(deployed, lambda r, d: r["installed"].pop("unicorn")),
     "packages", Change, r"^install unicorn$"),
    # stock unicorn.service
    ("stock unit absent, no package change", edit(deployed, lambda r, d: r["units"].update(
        {host.STOCK_UNIT: dict(INACTIVE)})), "stock unicorn", NoChange, r"absent"),
    ("stock unit masked", deployed, "stock unicorn", NoChange, r"masked"),
    ("stock unit enabled", edit(deployed, lambda r, d: r["units"].update(
        {host.STOCK_UNIT: dict(RUNNING)})), "stock unicorn", Change, r"mask unicorn.service"),
    ("stock unit failed", edit(deployed, lambda r, d: r["units"][host.STOCK_UNIT].update(
        active="failed")), "stock unicorn", Change, r"mask"),
    ("packages change: mask again", fresh, "stock unicorn", Change, r"mask unicorn.service"),
    # deploy user
    ("no deploy user", fresh, "deploy user", Change, r"^create deploy$"),
    ("deploy user exists", deployed, "deploy user", NoChange, r"^deploy$"),
    # directories
    ("no directories", fresh, "directories", Change, r"^fix 13: /srv/shop, "),
    ("directories in place", deployed, "directories", NoChange, r"layout and permissions"),
    ("socket dir lost nginx's group", edit(deployed, node_of(
        lambda d: f"{d.paths.shared}/tmp/sockets", group="deploy")), "directories", Change,
     r"^fix 1: /srv/shop/shared/tmp/sockets$"),
    # env file
    ("no env file", fresh, "env file", Change, r"write /etc/railsfab/shop.env"),
    ("env file in place", deployed, "env file", NoChange, r"\(0600\)"),
    ("env file readable by others", edit(deployed, node_of(lambda d: d.paths.env_file,
                                                           mode="0644")), "env file", Change,
     r"0600"),
    ("env file content differs", edit(deployed, file_of(lambda d: d.paths.env_file)),
     "env file", Change, r"secrets not shown"),
    # release
    ("first release", fresh, "release", Change, r"^create release 20261201000000$"),
    ("source unchanged", deployed, "release", NoChange, r"20261130000000 is current"),
    ("source changed", edit(deployed, new_source), "release", Change, r"create release"),
    ("current release failed", edit(deployed, lambda r, d: r["releases"][r["current"]].update(
        state="failed")), "release", Change, r"create release"),
    # bundle
    ("no new release: no bundle", deployed, "bundle", type(None), None),
    ("first release: bundle", fresh, "bundle", Change, r"bundle install --local"),
    ("same Gemfile: lock reused", edit(deployed, new_source), "bundle", NoChange,
     r"lock reused from 20261130000000"),
    ("Gemfile changed", edit(deployed, new_gems), "bundle", Change, r"bundle install"),
    ("gem packages changed", edit(edit(deployed, new_source),
                                  lambda r, d: r["installed"].pop("ruby-rails")),
     "bundle", Change, r"bundle install"),
    # assets
    ("asset inputs unchanged: reused", edit(deployed, new_source), "assets", NoChange,
     r"reused from 20261130000000"),
    ("asset inputs changed", edit(edit(deployed, new_source), lambda r, d: r["releases"][
        r["current"]].update(assets="old")), "assets", Change,
     r"^RAILS_ENV=production assets:precompile$"),
    # migrate
    ("no release: no migration", deployed, "migrate", NoChange, r"migrations unchanged"),
    ("migrations unchanged", edit(deployed, new_source), "migrate", NoChange, r"unchanged"),
    ("migrations changed", edit(edit(deployed, new_source), lambda r, d: r["releases"][
        r["current"]].update(migrations="old")), "migrate", Change,
     r"^RAILS_ENV=production db:migrate$"),
    # server config and unit
    ("config in place", deployed, "unicorn config", NoChange, r"/srv/shop/shared/config/"),
    ("config differs", edit(deployed, file_of(lambda d: d.paths.server_config)),
     "unicorn config", Change, r"^update /srv/shop/shared/config/unicorn.rb$"),
    ("unit differs", edit(deployed, file_of(lambda d: d.paths.unit)), "unicorn unit", Change,
     r"^update /etc/systemd/system/shop-unicorn.service$"),
    # nginx site
    ("site in place", deployed, "nginx site", NoChange, r"default site absent"),
    ("default site shadows the app", edit(deployed, lambda r, d: r["nodes"].update(
        {d.paths.nginx_default_sites[0]: {"link": "x", "dir": False}})), "nginx site", Change,
     r"remove /etc/nginx/sites-enabled/default"),
    ("site not enabled", edit(deployed, lambda r, d: r["nodes"].pop(d.paths.nginx_site_enabled)),
     "nginx site", Change, r"^update /etc/nginx/sites-available/shop$"),
    # switch
    ("no new release: no switch", deployed, "switch", type(None), None),
    ("new release: switch", edit(deployed, new_source), "switch", Change,
     r"^point current to releases/20261201000000$"),
    # the app server
    ("server running, nothing changed", deployed, "unicorn", NoChange,
     r"running, master pid 4242"),
    ("server stopped", edit(deployed, lambda r, d: unit_of(r, d, active="inactive")),
     "unicorn", Change, r"^start shop-unicorn.service$"),
    ("new release: USR2 handover", edit(deployed, new_source), "unicorn", Change,
     r"hand over \(new release; usr2\)"),
    ("env file changed: full restart", edit(deployed, file_of(lambda d: d.paths.env_file)),
     "unicorn", Change, r"restart shop-unicorn.service \(env file changed; full restart\)"),
    ("unit changed: full restart", edit(deployed, file_of(lambda d: d.paths.unit)),
     "unicorn", Change, r"\(unit changed; full restart\)"),
    ("config changed: handover", edit(deployed, file_of(lambda d: d.paths.server_config)),
     "unicorn", Change, r"hand over \(config; usr2\)"),
    ("server disabled", edit(deployed, lambda r, d: unit_of(r, d, enabled="disabled")),
     "unicorn", Change, r"^enable shop-unicorn.service$"),
    # nginx
    ("nginx running", deployed, "nginx", NoChange, r"running, serves the config on disk"),
    ("site changes: reload", edit(deployed, file_of(lambda d: d.paths.nginx_site)), "nginx",
     Change, r"reload \(site changed\)"),
    ("nginx stopped", edit(deployed, lambda r, d: r["units"]["nginx"].update(active="failed")),
     "nginx", Change, r"^start$"),
    # verify and retire
    ("verification after activation", deployed, "verify", Check, r"through nginx"),
    ("other server never ran: nothing to retire", deployed, "retire puma", type(None), None),
    ("other server still installed", edit(deployed, other_unit), "retire puma", Change,
     r"stop and remove shop-puma.service"),
    # finalize
    ("nothing new, nothing old", deployed, "releases", NoChange,
     r"20261130000000 current, nothing to clean"),
    ("new release marked good", edit(deployed, new_source), "releases", Change,
     r"^mark 20261201000000 good$"),
    ("releases beyond keep_releases go, oldest first", edit(deployed, releases(
        "01", "02", "03", "04", "05", "06", "07", current="06")), "releases", Change,
     r"^mark 06 good, remove 01 02$"),
]


@pytest.mark.parametrize("case,facts,step,kind,says", CASES, ids=[c[0] for c in CASES])
def test_step_decides_from_facts(d, case, facts, step, kind, says):
    got = outcome(facts(d), d, step)
    assert isinstance(got, kind), got
    if says is not None:
        text = got.what if isinstance(got, (Change, Check)) else got.reason
        assert re.search(says, text), text


PUMA_CASES = [
    ("only the app's code changed: phased", new_source, r"hand over \(new release; phased\)"),
    ("the gems changed: hot", new_gems, r"hand over \(new release; hot\)"),
    ("puma.rb changed: hot", file_of(lambda d: d.paths.server_config), r"\(config; hot\)"),
]


@pytest.mark.parametrize("case,fn,says", PUMA_CASES, ids=[c[0] for c in PUMA_CASES])
def test_puma_restart_mode_follows_what_changed(puma, case, fn, says):
    got = outcome(edit(deployed, fn)(puma), puma, "puma")
    assert isinstance(got, Change) and re.search(says, got.what), got


def test_switch_to_puma_starts_it_beside_unicorn_then_retires_unicorn(puma):
    f = edit(deployed, lambda r, d: (unit_of(r, d, **INACTIVE), other_unit(r, d)))(puma)
    got = outcome(f, puma, "puma")
    assert got.what == ("start shop-puma.service beside shop-unicorn.service (its own socket; "
                        "nginx moves over once it answers)")
    assert isinstance(outcome(f, puma, "retire unicorn"), Change)


def test_a_deployed_host_plans_no_change_and_disturbs_nothing(d):
    plans = plan(deployed(d), d, migrate=True)
    assert not any(p.changed for p in plans.values())
    assert not plans["activate"].disturbs


def test_a_new_release_disturbs_only_in_activation(d):
    plans = plan(edit(deployed, new_source)(d), d, migrate=True)
    assert not plans["prepare"].disturbs and plans["activate"].disturbs
    assert [p.step for p in plans["activate"].changed] == ["switch", "unicorn"]


def test_phases_list_every_step_in_order(d):
    steps = [s(d) if callable(s) else s for ph in (PREPARE, MIGRATE, ACTIVATE, FINALIZE)
             for s, _ in ph.ops]
    assert steps == ["ruby", "apt proxy", "packages", "deploy user", "app user", "directories",
                     "env file", "bundle config", "linked files", "release", "stock unicorn",
                     "bundle", "assets", "migrate", "unicorn config", "unicorn unit", "nginx site",
                     "switch", "unicorn", "nginx", "verify", "retire puma", "releases"]


def test_dry_run_prints_the_plan_and_runs_nothing(d):
    """--dry-run is the executor's mode: its lines are the plan's, word for word."""
    f = edit(deployed, lambda r, d: (new_source(r, d), r["files"].update(
        {d.paths.nginx_site: "old"}), r["texts"].update(
        {d.paths.nginx_site: d.files["site"].replace("25m", "1m")})))(d)
    out = io.StringIO()
    rep = Reporter(Console(file=out, width=200, highlight=False), live=False)
    plans = plan(f, d, migrate=True)
    run = HostRun(host=inventory.Host(name="web1", address="198.51.100.7"), facts=f)
    for phase in plans.values():
        Executor(rep, dry=True).run(run, phase)  # no connection: nothing may be run
    expected = [(p.step, "changed" if isinstance(p.outcome, Change) else "ok",
                 f"would {p.outcome.what}" if isinstance(p.outcome, Change) else p.outcome.reason)
                for phase in plans.values() for p in phase if not isinstance(p.outcome, Check)]
    got = [(r.step, r.status, r.detail) for r in rep.results]
    assert got == expected
    assert "-    client_max_body_size 1m;" in out.getvalue()
    assert "+    client_max_body_size 25m;" in out.getvalue()
    assert run.applied == []


def test_the_gemfiles_ruby_line_is_checked_against_the_hosts_ruby(d):
    from dataclasses import replace

    from railsfab.errors import RailsfabError

    apt_ruby = {"version": "3.1.2", "package": "ruby3.1", "installed": False}
    f = edit(fresh, lambda r, d: r.update(ruby=apt_ruby))(d)
    assert outcome(f, d, "ruby") is None  # the sample app's Gemfile has no ruby line
    ok = host.ruby(f, replace(d, ruby=("~> 3.1",)), None)
    assert ok.reason == ("Ruby 3.1.2 (ruby3.1, what apt installs here) meets the Gemfile's "
                         "ruby ~> 3.1")
    with pytest.raises(RailsfabError) as refused:
        host.ruby(f, replace(d, ruby=("3.3.8",)), None)
    assert str(refused.value) == ("the Gemfile asks for ruby 3.3.8; the host has Ruby 3.1.2 "
                                  "(ruby3.1, what apt installs here)")
    assert 'ruby \\"~> 3.1\\"' not in refused.value.fix and '"~> 3.1"' in refused.value.fix


@pytest.fixture(scope="module")
def bundler(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        return stage(tmp_path_factory.mktemp("bundler"), mp, gems="bundler",
                     gem_source_mirror="http://10.0.0.1:9292", packages=["libmariadb3"])


def abis(*versions):
    """gems for these Ruby ABIs in shared/bundle, Bundler's config in place"""
    def fn(raw, d):
        raw["bundle_abis"] = list(versions)
        raw["files"][f"{d.paths.bundle_config}/config"] = sha(d.bundle_config)
        raw["ruby"] = {"version": "3.1.2", "package": "ruby3.1", "installed": True}
    return fn


BUNDLER_CASES = [
    ("a new lockfile installs into shared/bundle", edit(edit(deployed, new_gems), abis("3.1.0")),
     Change, r"^bundle install \(deployment mode, into /srv/shop/shared/bundle, from "
             r"http://10.0.0.1:9292\)$"),
    ("the same lockfile: nothing to install", edit(edit(deployed, new_source), abis("3.1.0")),
     NoChange, r"Gemfile.lock unchanged: its gems are in /srv/shop/shared/bundle"),
    ("another Ruby ABI: install for it", edit(edit(deployed, new_source), abis("3.0.0")),
     Change, r"^bundle install"),
]


@pytest.mark.parametrize("case,facts,kind,says", BUNDLER_CASES, ids=[c[0] for c in BUNDLER_CASES])
def test_bundler_mode_installs_only_when_the_lockfile_or_ruby_changed(bundler, case, facts,
                                                                       kind, says):
    got = outcome(facts(bundler), bundler, "bundle")
    assert isinstance(got, kind), got
    assert re.search(says, got.what if isinstance(got, Change) else got.reason)


def test_bundler_mode_writes_bundlers_config_and_no_gemfile_railsfab(bundler):
    got = outcome(fresh(bundler), bundler, "bundle config")
    assert got.what == "write /srv/shop/shared/config/bundle/config"
    assert 'BUNDLE_MIRROR__HTTPS://RUBYGEMS__ORG/: "http://10.0.0.1:9292"' in \
        bundler.bundle_config
    assert bundler.gemfile == "" and "BUNDLE_APP_CONFIG=" in bundler.files["unit"]
