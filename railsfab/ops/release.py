"""Prepare, part two: the new release (upload, bundle, assets), and the migration that runs
once, on the migrate host, before any host switches. Nothing here touches what is being
served: the release is built beside the one `current` points to."""

from __future__ import annotations

import json
import shlex

from railsfab import artifact, commands
from railsfab import build as js_build
from railsfab.facts import Facts
from railsfab.ops import runs
from railsfab.ops.base import Change, Diff, NoChange, Plan, Script
from railsfab.ops.desired import Desired
from railsfab.paths import GEMFILE, LINKED_DIRS, META


def as_deploy_user(d: Desired, script: str) -> str:
    """Inside a release (which the app's own code may change), root never writes: the
    deploy user does."""
    return f"runuser -u {d.app.deploy_user} -- sh -c {shlex.quote(script)}"


def write_meta(d: Desired, release: str, state: str) -> Script:
    path = f"{d.paths.release(release)}/{META}"
    meta = json.dumps({"id": release, **d.meta(state)})
    return Script(as_deploy_user(d, f"umask 022 && cat > {path}.new && mv {path}.new {path}"),
                  stdin=meta.encode())


def release(f: Facts, d: Desired, p: Plan) -> Change | NoChange:
    cur = f.current_meta
    if cur.get("source") == d.digests.release and cur.get("state") != "failed":
        return NoChange(f"{f.current} is current (source unchanged)")
    rel = d.paths.release(d.release)
    diff, rendered = None, ""
    if d.storage_yml:
        diff = Diff("config/storage.yml", d.storage_yml,
                    old=d.source.text("config/storage.yml") or "")
        rendered = "; config/storage.yml rendered by railsfab"
    if d.artifact is not None:  # built once, in the stage's bucket; each host fetches it
        def unpack(digest: str) -> str:  # the archive, once its digest is checked
            return as_deploy_user(d, _unpack(d, rel, artifact.ARCHIVE) + (
                f" && rm -f {artifact.ARCHIVE} && echo {digest} > {artifact.DIGEST_FILE}"))
        return Change(f"create release {d.release} from its archive in "
                      f"{d.artifact.where}{rendered}", disturbs=False, diff=diff,
                      run=artifact.fetch(d, unpack))
    # One round trip: the archive carries what railsfab adds (Gemfile.railsfab, the ledger
    # entry, config/storage.yml when rendered). The folder is made by the deploy user (its
    # releases/): a link planted at that name makes mkdir fail, root never follows it.
    scripts = (Script(as_deploy_user(d, f"mkdir -m 0711 {rel} && {_unpack(d, rel, '-')}"),
                      stdin=d.release_archive),)
    return Change(f"create release {d.release}{rendered}", disturbs=False, scripts=scripts,
                  diff=diff, done=f"{d.release} uploaded ({len(d.source.files)} files){rendered}")


def _unpack(d: Desired, rel: str, archive: str) -> str:
    """Unpacked by the deploy user, private by default (umask 027), the shared folders linked
    in; only public/ is opened up to nginx."""
    # the shared dirs and app.linked_files alike: each <path> a link to shared/<path>
    links = " && ".join(f"rm -rf {x} && mkdir -p $(dirname {x}) && ln -s {d.paths.shared}/{x} {x}"
                        for x in (*LINKED_DIRS, *(lf.path for lf in d.linked)))
    return (f"umask 027 && cd {rel} && tar -xzf {archive} && {links} && "
            "(test ! -d public || chmod -R o+rX public)")


def open_public(rel: str) -> str:
    """public/ readable by nginx, written by nobody but the deploy user (a Rails command's
    umask leaves it group-writable); refused when it is a link (it would open up the
    target)."""
    return (f"if [ -L {rel}/public ]; then echo \"{rel}/public is a link to "
            f"$(readlink {rel}/public), not a folder\" >&2; exit 1; fi; "
            f"chmod -R o+rX,g-w {rel}/public")


def _previous(f: Facts, d: Desired) -> str | None:
    return d.paths.release(f.current) if f.current else None


def bundle(f: Facts, d: Desired, p: Plan) -> Change | NoChange | None:
    if not p.changes("release"):
        return None
    if d.app.gems == "bundler":
        return _bundle_deployment(f, d, p)
    rel, prev = d.paths.release(d.release), _previous(f, d)
    install = commands.bundle_install(d.paths, rel, d.app.deploy_user)
    if prev and f.current_meta.get("gems") == d.digests.gems and not p.changes("packages"):
        # Same Gemfile, same gem packages: the resolved lock of the running release holds.
        lock = f"{GEMFILE}.lock"
        reuse = Script(as_deploy_user(d, f"test -f {prev}/{lock} && cp -p {prev}/{lock} "
                                          f"{rel}/{lock}") + f" || {install}")
        return NoChange(f"Gemfile unchanged, lock reused from {f.current}", scripts=(reuse,))
    without = d.app.bundle_without.replace(":", ", ")
    return Change(f"bundle install --local (without {without})", disturbs=False,
                  run=runs.bundle(str(install), rel, debian=_debian(f)))


def _bundle_deployment(f: Facts, d: Desired, p: Plan) -> Change | NoChange:
    """The app's Gemfile.lock, as it is, into shared/bundle, before the switch: the running
    release keeps its gems (Bundler loads the versions its own lockfile pins)."""
    ruby = (f.ruby or {}).get("version", "")
    abi = ".".join(ruby.split(".")[:2]) + ".0" if ruby else ""
    if (_previous(f, d) and f.current_meta.get("gems") == d.digests.gems
            and abi in f.raw.get("bundle_abis", []) and not p.changes("bundle config")):
        return NoChange(f"Gemfile.lock unchanged: its gems are in {d.paths.bundle}")
    rel = d.paths.release(d.release)
    install = commands.bundle_install(d.paths, rel, d.app.deploy_user)
    source = d.app.gem_source_mirror or "rubygems.org"
    return Change(f"bundle install (deployment mode, into {d.paths.bundle}, from {source})",
                  disturbs=False, run=runs.bundle_deployment(str(install), source))


def _debian(f: Facts) -> str:
    o = f.raw.get("os") or {}
    return f"{'Debian' if o.get('id') == 'debian' else o.get('id', 'OS')} {o.get('version', '')}"


def assets(f: Facts, d: Desired, p: Plan) -> Change | NoChange | None:
    if not p.changes("release"):
        return None
    if not d.source.asset_pipeline:
        return NoChange("the app has no asset pipeline (no sprockets-rails, propshaft or "
                        "*bundling-rails in its Gemfile): nothing to precompile")
    rel, prev = d.paths.release(d.release), _previous(f, d)
    if prev and f.current_meta.get("assets") == d.digests.assets:
        reuse = Script(as_deploy_user(d, f"test -d {prev}/public/assets && "
                                          f"cp -al {prev}/public/assets {rel}/public/assets"))
        return NoChange(f"asset inputs unchanged, reused from {f.current}", scripts=(reuse,))
    return precompile(d)


def precompile(d: Desired) -> Change:
    """assets:precompile in the new release, public/ opened up to nginx after it."""
    rel, env = d.paths.release(d.release), d.app.rails_env
    # app.build's output is in the release: jsbundling/cssbundling must not build again
    cmd = commands.rails(d.paths, rel, d.app.deploy_user, env, "assets:precompile",
                         extra_env=js_build.SKIP_ENV if d.build else None)
    fix = (f"fix the asset error above (try `RAILS_ENV={env} bin/rails assets:precompile` "
           "locally), then deploy again")
    return Change(f"RAILS_ENV={env} assets:precompile", disturbs=False, scripts=(
        Script(str(cmd), fix=fix),
        Script(as_deploy_user(d, open_public(rel)), fix=(
            "the release's own code replaced public/ with a link during assets:precompile "
            "(a gem, the Rakefile): find what does it; railsfab follows no link it did not "
            "make")),
    ))


def migrate(f: Facts, d: Desired, p: Plan) -> Change | NoChange:
    if not p.changes("release") or f.current_meta.get("migrations") == d.digests.migrations:
        return NoChange("migrations unchanged")
    rel, env = d.paths.release(d.release), d.app.rails_env
    db = d.app.database
    if db is None:  # the stage names no database: the app's own config decides
        cmd = commands.rails(d.paths, rel, d.app.deploy_user, env, "db:migrate")
        return Change(f"RAILS_ENV={env} db:migrate", disturbs=False, scripts=(
            Script(str(cmd), fix=runs.MIGRATION_FIX),))
    # One Rails boot: the release says which database it will use, then migrates it.
    cmd = commands.rails(d.paths, rel, d.app.deploy_user, env, "runner", "eval($stdin.read)",
                         extra_env={"RAILSFAB_DATABASE": f"{db.host} {db.name} {db.user}"})
    return Change(f"RAILS_ENV={env} db:migrate (on {db.user}@{db.host}/{db.name})",
                  disturbs=False, run=runs.migrate(str(cmd), d.app.database, d.app.name))


def finalize(f: Facts, d: Desired, p: Plan) -> Change | NoChange | None:
    """The new release is marked good (it verified on every host); releases beyond
    keep_releases go, oldest first, never the current one."""
    new = p.changes("release")
    current = d.release if new else f.current
    if current is None:
        return None
    keep = d.app.keep_releases
    others = [n for n in sorted(set(f.releases) | ({d.release} if new else set()))
              if n != current]
    remove = others[:max(0, len(others) - (keep - 1))]
    # a release a stopped deploy left current without the mark: verified now (activate)
    mark = new or f.current_meta.get("state") not in ("good", None)
    if not mark and not remove:
        return NoChange(f"{current} current, nothing to clean")
    scripts = [write_meta(d, current, "good")] if mark else []
    if remove:
        # by the deploy user, whose releases they are (root would follow a planted link)
        scripts.append(Script(as_deploy_user(d, f"cd {d.paths.releases} && rm -rf -- "
                                              + " ".join(shlex.quote(n) for n in remove))))
    gone = f", removed {' '.join(remove)}" if remove else ""
    return Change(f"mark {current} good{gone.replace('removed', 'remove')}", disturbs=False,
                  done=f"{current} good; kept {keep}{gone}", scripts=tuple(scripts))
