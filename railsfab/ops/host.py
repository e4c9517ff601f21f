"""Prepare, part one: what the host needs before a release can be built on it. Nothing here
touches what is being served."""

from __future__ import annotations

from railsfab import commands, gems, linked
from railsfab.errors import RailsfabError
from railsfab.facts import Facts
from railsfab.ops import runs
from railsfab.ops.base import Change, NoChange, Plan, Script
from railsfab.ops.desired import Desired, Serving, sha

APT_PROXY_FILE = "/etc/apt/apt.conf.d/80railsfab-proxy"
APT_LISTS_MAX_AGE = 6 * 3600
# Debian's unicorn package ships unicorn.service (configured through /etc/default/unicorn).
# Enabled but unconfigured it fails at every boot and leaves the host "degraded"; ours is
# <app>-unicorn.service, so the stock one is masked.
STOCK_UNIT = "unicorn.service"
NGINX_GROUP = "www-data"


def dirs(d: Serving) -> list[tuple[str, str, str, str]]:
    """(path, owner, group, mode). The deploy user owns the releases and the folders above
    what the app writes; the app's user owns what it may write (shared/log, tmp, storage,
    app.writable; setgid to the deploy user's group, which Rails commands write through).
    nginx's group may enter the socket dir and nothing else of the app's private files;
    public/ is world-readable inside each release."""
    u, a, p = d.app.deploy_user, d.app.run_user, d.paths
    return [
        (p.deploy_to, u, u, "0711"),
        (p.releases, u, u, "0711"),
        (p.failed_releases, u, u, "0700"),
        (p.shared, u, u, "0711"),
        (f"{p.shared}/log", a, u, "2770"),
        (f"{p.shared}/tmp", a, u, "2771"),
        (f"{p.shared}/tmp/pids", a, u, "2770"),
        (f"{p.shared}/tmp/cache", a, u, "2770"),
        (f"{p.shared}/tmp/sockets", a, NGINX_GROUP, "2750"),
        (f"{p.shared}/storage", a, u, "2770"),
        *((w, a, u, "2770") for w in d.app.writable),
        (p.shared_config, "root", u, "0750"),
        ("/etc/railsfab", "root", "root", "0700"),
    ] + ([(p.bundle, u, u, "0750"), (p.bundle_config, "root", u, "0750")]
         if d.app.gems == "bundler" else [(p.gem_home, u, u, "0750")])


def ruby(f: Facts, d: Desired, p: Plan) -> NoChange | None:
    """The Gemfile's ruby line against the host's Ruby (or the one apt would install), before
    anything is installed: a mismatch stops the deploy with the choices."""
    if not d.ruby:
        return None
    wanted = ", ".join(d.ruby)
    have = f.ruby
    if have is None:
        return NoChange(f"the Gemfile asks for ruby {wanted}; the host's Ruby is unknown "
                        "(not installed, no apt candidate)")
    where = (f"Ruby {have['version']} ({have['package']}"
             + ("" if have["installed"] else ", what apt installs here") + ")")
    if gems.satisfies(have["version"], list(d.ruby)):
        return NoChange(f"{where} meets the Gemfile's ruby {wanted}")
    raise RailsfabError(
        f"the Gemfile asks for ruby {wanted}; the host has {where}", step="ruby",
        state="nothing was changed on any host",
        fix=("choose one: relax the Gemfile's ruby line (e.g. `ruby \"~> "
             f"{'.'.join(have['version'].split('.')[:2])}\"`; Bundler refuses any other "
             "Ruby); or deploy to hosts whose release has that Ruby (Debian 12: 3.1, Debian "
             "13: 3.3, Ubuntu 24.04: 3.2); or install that Ruby on the hosts yourself "
             "(ruby-build/rbenv: railsfab does not build Rubies)"))


def apt_proxy(f: Facts, d: Desired, p: Plan) -> Change | NoChange | None:
    if not d.apt_proxy:
        return None
    text = f'Acquire::http::Proxy "{d.apt_proxy}";\n'
    if f.file_sha(APT_PROXY_FILE) == sha(text):
        return NoChange(d.apt_proxy)
    return Change(f"set {d.apt_proxy}", done=d.apt_proxy, disturbs=False,
                  scripts=(Script(f"cat > {APT_PROXY_FILE}", stdin=text.encode()),))


def packages(f: Facts, d: Desired, p: Plan) -> Change | NoChange:
    missing = [name for name in d.packages if name not in f.installed]
    if not missing:
        return NoChange(f"{len(d.packages)} installed")
    age = f.raw.get("apt_lists_age")
    update = age is None or age > APT_LISTS_MAX_AGE
    return Change(f"install {' '.join(missing)}", done=f"installed {' '.join(missing)}",
                  background=True,
                  scripts=(Script(commands.apt_install_script(missing, update=update)),))


def stock_unit(f: Facts, d: Desired, p: Plan) -> Change | NoChange:
    state = f.unit(STOCK_UNIT)
    if state["enabled"] in ("masked", "") and state["active"] != "failed" \
            and not p.changes("packages"):
        return NoChange(f"{STOCK_UNIT} {state['enabled'] or 'absent'}")
    return Change(f"mask {STOCK_UNIT} (ours is {d.paths.unit_name})", disturbs=False,
                  done=f"{STOCK_UNIT} masked (ours is {d.paths.unit_name})",
                  scripts=(Script(f"systemctl mask -q --now {STOCK_UNIT} && "
                                  f"systemctl reset-failed {STOCK_UNIT} 2>/dev/null; true"),))


def deploy_user(f: Facts, d: Desired, p: Plan) -> Change | NoChange:
    u = d.app.deploy_user
    if f.raw["user"]:
        return NoChange(u)
    return Change(f"create {u}", done=f"created {u}", disturbs=False, scripts=(Script(
        f"useradd --system --create-home --home-dir /home/{u} --shell /bin/bash "
        f"--user-group {u}"),))


def app_user(f: Facts, d: Desired, p: Plan) -> Change | NoChange:
    """The app's own user: no shell, no home, no sudo; it reads the releases through the
    deploy user's group (a member, and its unit's SupplementaryGroups)."""
    a, u = d.app.run_user, d.app.deploy_user
    groups = f.raw.get("app_user")
    if groups and u in groups:
        return NoChange(f"{a} (groups: {', '.join(groups)})")
    if groups:
        return Change(f"add {a} to group {u}", done=f"{a} added to group {u}", disturbs=False,
                      scripts=(Script(f"usermod -a -G {u} {a}"),))
    return Change(f"create {a}", done=f"created {a} (group {u})", disturbs=False, scripts=(Script(
        f"useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "
        f"--user-group --groups {u} {a}"),))


def directories(f: Facts, d: Desired, p: Plan) -> Change | NoChange:
    wrong = []
    for path, owner, group, mode in dirs(d):
        n = f.node(path)
        if not (n and n["dir"] and (n["owner"], n["group"], n["mode"]) == (owner, group, mode)):
            # the app ran as the deploy user before app.app_user: what it wrote becomes its own
            adopt = d.app.deploy_user if owner == d.app.run_user and n and n["dir"] and \
                n["owner"] == d.app.deploy_user else ""
            wrong.append([path, owner, group, mode, adopt])
    if not wrong:
        return NoChange(f"{d.paths.deploy_to} layout and permissions")
    # Made from / down without following links (onhost/dirs.py): the deploy user owns
    # deploy_to and shared/, the app's user shared/log, tmp and storage; either could have
    # swapped a folder for a link to /etc.
    return Change(f"fix {len(wrong)}: " + ", ".join(path for path, *_ in wrong),
                  done=f"{len(wrong)} fixed: " + ", ".join(path for path, *_ in wrong),
                  disturbs=False, run=runs.ensure_dirs(wrong))


def env_file(f: Facts, d: Desired, p: Plan) -> Change | NoChange:
    path = d.paths.env_file
    node = f.node(path)
    if f.file_sha(path) == sha(d.env_text) and node and \
            (node["owner"], node["mode"]) == ("root", "0600"):
        return NoChange(f"{path} (0600)")
    # umask 077 before the file exists: it is never readable by anyone else. The running app
    # server reads it only when it (re)starts: the app server step restarts it.
    return Change(f"write {path} (0600, secrets not shown)",
                  done=f"{path} (0600, secrets not shown)", disturbs=False,
                  scripts=(Script(f"umask 077 && cat > {path}.new && chown root:root "
                                  f"{path}.new && mv {path}.new {path}",
                                  stdin=d.env_text.encode()),))


def linked_files(f: Facts, d: Desired, p: Plan) -> Change | NoChange | None:
    """app.linked_files: uploaded ones written (root:deploy 0640, in shared/config) when they
    differ; the hosts' own must be there before a release links them."""
    if not d.linked:
        return None
    write, missing = [], []
    for x in d.linked:
        n = f.node(x.shared)
        if x.data is None:
            if not n:
                missing.append(x)
        elif f.file_sha(x.shared) != x.digest or not n or n["link"] or \
                (n["owner"], n["group"], n["mode"]) != ("root", d.app.deploy_user, linked.MODE):
            write.append(x)
    if not write and not missing:
        return NoChange(", ".join(x.path for x in d.linked))
    # Root writes them: shared/config and what it makes inside are root's, so no link there
    # can steer it.
    g = d.app.deploy_user
    scripts = tuple(Script(
        f"install -d -o root -g {g} -m 0750 $(dirname {x.shared}) && umask 077 && "
        f"cat > {x.shared}.new && chown root:{g} {x.shared}.new && "
        f"chmod {linked.MODE} {x.shared}.new && mv -f {x.shared}.new {x.shared}",
        stdin=x.data) for x in write)
    scripts += tuple(Script(f"test -e {x.shared}", fix=(
        f"put the file there (root:{d.app.deploy_user}, mode {linked.MODE}), or give "
        f"{x.path} a `from:` (a local file) or `secret:` in app.linked_files")) for x in missing)
    said = [f"{x.path} ({x.origin})" for x in write] + [
        f"{x.path}: {x.shared} is missing" for x in missing]
    return Change("write " + ", ".join(said) if not missing else "check " + ", ".join(said),
                  done="wrote " + ", ".join(said), disturbs=False, scripts=scripts)


def bundle_config(f: Facts, d: Desired, p: Plan) -> Change | NoChange | None:
    """app.gems: bundler: Bundler's config (deployment mode, shared/bundle, groups left out,
    mirror), read through BUNDLE_APP_CONFIG by every command and the app server."""
    if not d.bundle_config:
        return None
    dest = f"{d.paths.bundle_config}/config"
    if f.file_sha(dest) == sha(d.bundle_config):
        return NoChange(dest)
    return Change(f"write {dest}", done=dest, disturbs=False, scripts=(Script(
        f"umask 027 && cat > {dest}.new && chown root:{d.app.deploy_user} {dest}.new && "
        f"mv {dest}.new {dest}", stdin=d.bundle_config.encode()),))
