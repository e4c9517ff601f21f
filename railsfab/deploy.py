"""`fab deploy`: fresh hosts -> the app behind nginx + the stage's app server, idempotent.

Phases, each on all web hosts in parallel, each a plan made from the facts before it runs:
  facts     one round trip per host (and the deploy lock): railsfab.session; then, on EC2,
            the stack's app security group and instance profile: railsfab.attach
  prepare   packages, deploy user, directories, env file, new release (upload, bundle,
            assets: built on one host, the same files unpacked on the others,
            railsfab.assets_build): nothing here changes what is being served; what needs
            no package is done while apt runs
  migrate   once, on the `migrate` host, only when every host prepared its release
  activate  config files, atomic switch of `current`, app server, nginx, verification:
            through the one publish path (railsfab.publish)
  finalize  the other app server retired (after a switch); the release is marked good on
            every host; old releases beyond keep_releases go
Nothing restarts unless something it depends on changed; a second run changes nothing.
"""

from __future__ import annotations

import dataclasses
import shlex

from rich.markup import escape

from railsfab import artifact, assets_build, attach, facts
from railsfab import build as js_build
from railsfab.errors import RailsfabError
from railsfab.executor import Executor, HostRun, parallel
from railsfab.inventory import Inventory
from railsfab.ops import activate, desired, host, release
from railsfab.ops.base import Phase, Plan
from railsfab.ops.desired import Desired
from railsfab.publish import Publication, gate, publish
from railsfab.report import Reporter
from railsfab.session import Session

PREPARE = Phase("prepare", (
    ("ruby", host.ruby),
    ("apt proxy", host.apt_proxy),
    ("packages", host.packages),
    ("deploy user", host.deploy_user),
    ("app user", host.app_user),
    ("directories", host.directories),
    ("env file", host.env_file),
    ("bundle config", host.bundle_config),
    ("linked files", host.linked_files),
    ("release", release.release),
    ("stock unicorn", host.stock_unit),
    ("bundle", release.bundle),
    ("assets", release.assets),
))
# What needs none of the packages, so it is done while apt installs them (the release comes
# with curl when it is fetched from the bucket: then it waits).
ALONGSIDE_APT = ("deploy user", "app user", "directories", "env file", "bundle config",
                 "linked files", "release")


def alongside_apt(d: Desired) -> frozenset[str]:
    return frozenset(s for s in ALONGSIDE_APT if s != "release" or d.artifact is None)


MIGRATE = Phase("migrate", (("migrate", release.migrate),))
ACTIVATE = Phase("activate", (
    (lambda d: f"{d.server.name} config", activate.server_config),
    (lambda d: f"{d.server.name} unit", activate.unit),
    ("nginx site", activate.site),
    ("switch", activate.switch),
    (lambda d: d.server.name, activate.app_server),
    ("nginx", activate.nginx),
    ("verify", activate.verified),
))
# The other server (after a switch unicorn <-> puma) is retired only once every host serves:
# until then a failed host later in the roll can put each host back on it.
FINALIZE = Phase("finalize", (
    (lambda d: "retire " + " ".join(s.name for s in d.retired), activate.retire),
    ("releases", release.finalize),
))


def facts_spec(d: Desired) -> facts.Spec:
    p = d.paths
    dirs = tuple(x[0] for x in host.dirs(d))
    return facts.Spec(
        packages=d.packages, user=d.app.deploy_user, app_user=d.app.run_user,
        nodes=(*dirs, p.nginx_site_enabled, p.nginx_site, *p.nginx_default_sites, p.env_file,
               *(x.shared for x in d.linked)),
        files=(host.APT_PROXY_FILE, p.env_file, p.server_config, p.unit, p.nginx_site,
               f"{p.bundle_config}/config", *(x.shared for x in d.linked if x.data is not None)),
        texts=(p.server_config, p.unit, p.nginx_site),
        units=(p.unit_name, "nginx", host.STOCK_UNIT, *(s.paths.unit_name for s in d.retired)),
        bundle=p.bundle if d.app.gems == "bundler" else "",
        nginx=p.nginx_config if d.app.nginx else (),
    )


def plan(f: facts.Facts, d: Desired, *, migrate: bool = False) -> dict[str, Plan]:
    """A host's whole deploy, phase by phase, from its facts alone (what --dry-run prints)."""
    plans = {"prepare": PREPARE.plan(f, d)}
    if migrate:
        plans["migrate"] = MIGRATE.plan(f, d, plans["prepare"])
    plans["activate"] = ACTIVATE.plan(f, d, plans["prepare"])
    plans["finalize"] = FINALIZE.plan(f, d, plans["prepare"])
    return plans


def deploy(inv: Inventory, rep: Reporter, *, only: str | None = None,
           dry_run: bool = False) -> list[str]:
    """Deploy; returns the names of the hosts deployed. Raises RailsfabError."""
    _some_host_migrates(inv)  # the fleet was read when the command started
    d = desired.build(inv)  # everything local is checked before the first SSH connection
    _say_source(rep, inv, d)
    d = _build(inv, rep, d, dry_run)
    ex = Executor(rep, dry=dry_run)
    with Session(inv, rep, only=only, command="fab deploy", locking=not dry_run) as session:
        session.open(facts_spec(d), target_group=not dry_run)
        runs_ = list(session.runs.values())
        d = desired.settled(d, [r.facts for r in runs_])  # a joining host: the fleet's release
        d = desired.settled_puma(d, [r.facts for r in runs_])
        migrator = next((r for r in runs_ if "migrate" in r.host.roles), None)
        plans = {r.name: _plan(r, d, migrate=r is migrator) for r in runs_}
        attach.ensure(session, dry=dry_run)  # the app's security group before it serves
        artifact.upload(d, plans, rep, dry=dry_run)  # app.artifact: s3, once for every host
        # one host precompiles (none when these asset inputs were built before); the
        # others unpack what it built
        shared = assets_build.arrange(
            d, plans, inv.state_dir / "assets" / inv.stage_name,
            {r.name: r.facts.raw.get("assets_build") for r in runs_})

        def prepare(r: HostRun) -> None:
            try:
                ex.run(r, plans[r.name]["prepare"], alongside_apt(d))
            finally:
                if shared is not None:
                    shared.settle(r.name)

        parallel(prepare, runs_, "prepare")
        if session.failed():
            _abandon(session, d)
            session.raise_if_failed(fix=f"fix the cause above, then `fab deploy --stage "
                                        f"{inv.stage_name}`")
        if migrator is not None:
            _migrate(session, ex, d, migrator, plans[migrator.name]["migrate"])
        pub = Publication(session, ex, {n: p["activate"] for n, p in plans.items()},
                          revert=lambda r: activate.revert_plan(
                              d, r, leaving_gems=d.digests.gems), gate=gate(d))
        try:
            publish(pub)
        except RailsfabError:
            _abandon(session, d)
            raise
        _health_path(session, dry_run)
        parallel(lambda r: ex.run(r, plans[r.name]["finalize"]), runs_, "finalize")
        session.raise_if_failed()
        artifact.prune(d, rep)
        return [r.name for r in runs_]


def _health_path(session: Session, dry_run: bool) -> None:
    """app.health_path changed since `fab aws.provision`: the ALB asks it once every host
    serves the release that answers it (each passed the local gate, which asks it), not
    before, when the hosts still to roll might not answer it yet."""
    tg = None if dry_run else session.target_group()
    if tg is not None:
        tg.ensure_health_path(session.rep)


def _build(inv: Inventory, rep: Reporter, d: Desired, dry_run: bool) -> Desired:
    """app.build, here, before any host is asked: its files go into the release archive."""
    if d.build is None:
        return d
    if dry_run:
        rep.info(escape(f"  build    would run {d.build.said} here (unless built before)"))
        return d
    cache = inv.state_dir / "build" / inv.stage_name
    with rep.step("local", "build") as s:
        before = js_build.kept(d.build, cache).is_file()
        files = js_build.output(d.build, d.source, cache, offline=inv.stage.sandbox is not None)
        said = f"{len(files)} files in {js_build.OUTPUT}"
        s.ok(f"{said}, built before (asset inputs unchanged)") if before else \
            s.change(f"{d.build.said}: {said}")
    return dataclasses.replace(d, built=files)


def _say_source(rep: Reporter, inv: Inventory, d: Desired) -> None:
    src = d.source
    rep.info(escape(f"  source   {inv.stage.app.source}: {src.origin}, {len(src.files)} files"))
    if src.left_out:
        rep.info("  [yellow]left out[/] "
                 + escape(f"(secrets never ship): {', '.join(src.left_out)}"))
    if d.storage_note:
        rep.info(escape(f"  storage  {d.storage_note}"))
    if d.linked:
        rep.info(escape("  linked   " + ", ".join(f"{x.path} ({x.origin})" for x in d.linked)))
    if d.env_note:
        rep.info("  [yellow]env[/]      " + escape(d.env_note))
    if src.uncommitted:
        rep.info("  [yellow]not shipped[/] " + escape(
            f"(not committed at {inv.stage.app.ref or 'HEAD'}): {', '.join(src.uncommitted)}"))


def _some_host_migrates(inv: Inventory) -> None:
    """A fleet from AWS names its migrate host (a listed one, or an instance tagged for it):
    the migrations, and the secrets they need, never go to whichever instance is found."""
    hf = inv.stage.hosts_from
    if hf is None or any("migrate" in h.roles for h in inv.stage.hosts):
        return
    raise RailsfabError(
        "no host may run the migrations: none listed with role migrate, no instance found "
        f"tagged {hf.migrate_tag_said()}", step="hosts", state="nothing was changed",
        fix=f"tag the instance that migrates {hf.migrate_tag_said()} (only one is chosen: "
            f"the oldest), or list it under hosts with roles [web, migrate] in stage "
            f"{inv.stage_name} of {inv.path.name}")


def _plan(r: HostRun, d: Desired, *, migrate: bool) -> dict[str, Plan]:
    try:
        return plan(r.facts, d, migrate=migrate)
    except RailsfabError as exc:  # a step refused before anything ran anywhere
        exc.host = exc.host or r.name
        raise


def _migrate(session: Session, ex: Executor, d: Desired, r: HostRun, p: Plan) -> None:
    try:
        ex.run(r, p)
    except RailsfabError as exc:
        r.error = exc
        _abandon(session, d)
        session.raise_if_failed()


def _abandon(session: Session, d: Desired) -> None:
    """A deploy that failed before its release served: the new releases move aside, kept for
    inspection, never chosen by cleanup or rollback. A first deploy's release stays where
    `current` points (moving it would leave `current` dangling)."""
    rel, cur = d.paths.release(d.release), d.paths.current

    def one(r: HostRun) -> None:
        from railsfab import remote

        # as the deploy user, whose release it is (root would follow a planted link)
        script = (f"test ! -d {rel} || [ \"$(readlink {cur})\" = {rel} ] || "
                  f"mv {rel} {d.paths.failed_releases}/")
        remote.sh(r.conn, f"runuser -u {d.app.deploy_user} -- sh -c {shlex.quote(script)}",
                  sudo=True, step="abandon")

    touched = [r for r in session.runs.values() if "release" in r.applied]
    errors = {r.name: r.error for r in touched}
    parallel(one, touched, "abandon")
    for r in touched:  # a failed clean-up must not hide why the deploy failed
        r.error = errors[r.name]
