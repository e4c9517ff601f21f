"""`fab deploy`: fresh hosts -> the app behind nginx + unicorn/puma, idempotent, with releases.

Phases, each on all web hosts in parallel:
  1. facts      one round trip per host: packages, users, paths, file hashes, services
  2. prepare    packages, deploy user, directories, env file, new release (upload, bundle,
                assets) -- nothing here changes what is being served
  3. migrate    once, on the `migrate` host, only when every host prepared its release
  4. activate   config files (validated before they replace the old ones), atomic switch of
                `current`, app server (re)start, nginx reload, verification through nginx
                (or, without nginx, on the app server's port); the other app server retired
                once the new one serves (switching unicorn <-> puma costs no request)
  5. finalize   the release is marked good on every host; old releases beyond keep_releases go
Nothing restarts unless something it depends on changed; a second run changes nothing.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from railsfab import appserver, commands, facts, lock, remote, render, rolling, verify
from railsfab.errors import RailsfabError
from railsfab.inventory import Host, Inventory
from railsfab.paths import LINKED_DIRS, Paths
from railsfab.report import Reporter
from railsfab.secrets import app_secrets, env_file_text
from railsfab.source import Source

BASE_PACKAGES = ["ruby", "ruby-bundler", "curl"]
NGINX_GROUP = "www-data"
APT_PROXY_FILE = "/etc/apt/apt.conf.d/80railsfab-proxy"
STOCK_UNIT = "unicorn.service"
APT_LISTS_MAX_AGE = 6 * 3600


@dataclass
class HostRun:
    host: Host
    conn: object = None
    facts: facts.Facts | None = None
    release: str | None = None  # the new release's id, when this deploy makes one
    packages_changed: bool = False
    env_changed: bool = False
    server_config_changed: bool = False
    unit_changed: bool = False
    switched_from: str | None = None  # the release `current` pointed to before this deploy
    handed_over: bool = False
    server_started_at: float | None = None  # when the app server (re)started in this run
    reverted: bool = False  # back on `switched_from` after a failed activation
    site_changed: bool = False
    locked: bool = False  # this run holds the host's deploy lock
    error: RailsfabError | None = None
    notes: list[str] = field(default_factory=list)


class Deployer:
    def __init__(self, inv: Inventory, rep: Reporter, *, only: str | None = None,
                 dry_run: bool = False, command: str = "fab deploy") -> None:
        self.inv = inv
        self.rep = rep
        self.app = inv.stage.app
        self.dry = dry_run
        self.paths = Paths(self.app.name, self.app.deploy_to, self.app.app_server)
        self.server = self.app.app_server
        # The other app server: retired from hosts that still run it (a switch).
        self.old_paths = appserver.paths_of(self.paths, appserver.other(self.server))
        self.hosts = inv.hosts(role="web", only=only)
        if not self.hosts:
            raise RailsfabError(f"stage {inv.stage_name} has no host with role 'web'",
                                step="hosts", fix=f"give a host `roles: [web]` in {inv.path}")
        # Everything local is checked before the first SSH connection.
        self.source = Source(inv.resolve(self.app.source))
        secrets_file = inv.resolve(self.app.secrets_file) if self.app.secrets_file else None
        self.env_text = env_file_text(self._app_env(app_secrets(secrets_file)))
        self.templates = render.environment(inv.root)
        self.files = self._render_files()
        # What a release is made of: the app's files plus what we render into it.
        self.release_digest = _sha(self.source.digest + (self.storage_yml or ""))
        self.release_id = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        self.runs = {h.name: HostRun(h) for h in self.hosts}
        self.lock_holder = lock.holder(command)

    # --- what the hosts should look like ---------------------------------------------------

    def _app_env(self, secrets: dict[str, str]) -> dict[str, str]:
        env = {"RAILS_ENV": self.app.rails_env, "RACK_ENV": self.app.rails_env}
        db = self.app.database
        if db:
            env.update(DATABASE_HOST=db.host, DATABASE_PORT=str(db.port),
                       DATABASE_NAME=db.name, DATABASE_USERNAME=db.user)
        a = self.inv.stage.aws
        if a.bucket:
            # ActiveStorage on S3. On EC2 the SDK takes credentials from the instance role:
            # no keys on disk. The sandbox's endpoint takes dummy keys, via this 0600 file.
            env.update(ACTIVE_STORAGE_SERVICE="amazon", S3_BUCKET=a.bucket,
                       AWS_REGION=a.region)
            if a.endpoint_url:
                env["AWS_ENDPOINT_URL"] = a.endpoint_url
            if self.inv.stage.sandbox:
                env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
        env.update(secrets)
        return env

    def _render_files(self) -> dict[str, str]:
        if self.inv.stage.aws.bucket:
            self.storage_yml = render.render(self.templates, "storage.yml.j2", app=self.app,
                                             aws=self.inv.stage.aws, stage=self.inv.stage_name)
        else:
            self.storage_yml = None
        self.notify = self.server == "puma" and appserver.notify_supported(self.source.root)
        return appserver.files(self.templates, self.app, self.paths, notify=self.notify)

    @property
    def packages(self) -> list[str]:
        front = ["nginx"] if self.app.nginx else []
        return list(dict.fromkeys(front + BASE_PACKAGES + list(self.app.packages)))

    def _dirs(self) -> list[tuple[str, str, str, str]]:
        """(path, owner, group, mode). nginx's group may enter the socket dir and nothing else
        of the app's private files; public/ is world-readable inside each release."""
        u, p = self.app.deploy_user, self.paths
        return [
            (p.deploy_to, u, u, "0711"),
            (p.releases, u, u, "0711"),
            (p.failed_releases, u, u, "0700"),
            (p.shared, u, u, "0711"),
            (f"{p.shared}/log", u, u, "0750"),
            (f"{p.shared}/tmp", u, u, "0711"),
            (f"{p.shared}/tmp/pids", u, u, "0750"),
            (f"{p.shared}/tmp/sockets", u, NGINX_GROUP, "2750"),
            (f"{p.shared}/storage", u, u, "0750"),
            (p.shared_config, "root", u, "0750"),
            ("/etc/railsfab", "root", "root", "0700"),
        ]

    # --- the run ------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._run()
        finally:
            self._release_locks()  # also on failure and Ctrl-C

    def _run(self) -> None:
        self._parallel(self._gather, "facts")
        if self._failed():
            raise self._first_error()
        self._check_locks()
        self._parallel(self._prepare, "prepare")
        if self._failed():
            self._abandon_releases()
            raise self._first_error()
        self._migrate()
        tg = self._target_group()
        if tg is None:
            self._parallel(self._activate, "activate")
        else:
            targets = {r.host.name: tg.target(r.host, r.conn) for r in self.runs.values()}

            def activate_batch(batch: list[Host]) -> None:
                self._parallel(self._activate, "activate", [self.runs[h.name] for h in batch])
                if self._failed():
                    raise self._first_error()

            needs = {r.host.name for r in self.runs.values() if self._will_disturb(r)}
            try:
                rolling.roll(tg, self.rep, [r.host for r in self.runs.values()], targets,
                             activate_batch, needs_work=needs, recover=self._recover)
            except RailsfabError:
                pass  # recorded on the host's run; reverted and reported below
        if self._failed():
            self._parallel_revert()
            raise self._first_error()
        self._parallel(self._finalize, "finalize")
        if self._failed():
            raise self._first_error()

    def _check_locks(self) -> None:
        """Every host's lock was tried in the facts round trip; settle the refusals."""
        for r in self.runs.values():
            got = r.facts.raw["lock"]
            if got is None or got["acquired"]:
                continue
            if lock.is_stale(got["holder"], self.lock_holder):
                with self.rep.step(r.host.name, "lock") as s:
                    lock.acquire(r.conn, self.paths, self.lock_holder, steal_if=got["holder"])
                    r.locked = True
                    s.change(f"took over the lock of a dead deploy: "
                             f"{lock.describe(got['holder'])}")
                continue
            raise lock.refused(r.host.name, got["holder"])

    def _release_locks(self) -> None:
        for r in self.runs.values():
            if r.locked and r.conn is not None:
                try:
                    lock.release(r.conn, self.paths)
                    r.locked = False
                except Exception:  # noqa: BLE001 - the lock is reported stale next time
                    pass

    def close(self) -> None:
        for r in self.runs.values():
            if r.conn is not None:
                r.conn.close()

    def _will_disturb(self, r: HostRun) -> bool:
        """Will activation restart or reload anything on this host? (Then it leaves the
        target group while it happens.)"""
        f = r.facts
        p = self.paths
        return bool(
            r.release or r.env_changed or r.packages_changed
            or f.file_sha(p.server_config) != _sha(self.files["server_config"])
            or f.file_sha(p.unit) != _sha(self.files["unit"])
            or (f.file_sha(p.nginx_site) != _sha(self.files["site"]) if self.app.nginx
                else f.node(p.nginx_site_enabled) is not None)
            or f.unit(p.unit_name)["active"] != "active"
            or (self.app.nginx and f.unit("nginx")["active"] != "active")
            or f.unit(self.old_paths.unit_name)["load"] == "loaded"
        )

    def _target_group(self) -> rolling.TargetGroup | None:
        a = self.inv.stage.aws
        if self.dry or not (a.target_group_arn or a.stack_name):
            return None
        tg = rolling.TargetGroup(self.inv)
        return tg if tg.configured else None

    def _parallel(self, fn, phase: str, runs: list[HostRun] | None = None) -> None:
        todo = [r for r in (runs or self.runs.values()) if r.error is None]
        with ThreadPoolExecutor(max_workers=max(1, len(todo))) as pool:
            for r, fut in [(r, pool.submit(fn, r)) for r in todo]:
                exc = fut.exception()
                if exc is None:
                    continue
                if not isinstance(exc, RailsfabError):
                    exc = RailsfabError(f"{type(exc).__name__}: {exc}", host=r.host.name,
                                        step=phase)
                exc.host = exc.host or r.host.name
                r.error = exc

    def _failed(self) -> bool:
        return any(r.error for r in self.runs.values())

    def _first_error(self) -> RailsfabError:
        errors = [r for r in self.runs.values() if r.error]
        err = errors[0].error
        serving = []
        for r in self.runs.values():
            cur = r.facts.current if r.facts else None
            serving.append(f"{r.host.name} serving {cur}" if cur else f"{r.host.name} has no "
                           "release yet")
        if not err.state:
            err.state = "current unchanged: " + "; ".join(serving)
        if not err.fix:
            err.fix = f"fix the cause above, then `fab deploy --stage {self.inv.stage_name}`"
        if len(errors) > 1:
            err.message += "\n(also failed: " + ", ".join(
                f"{r.host.name} at {r.error.step}" for r in errors[1:]) + ")"
        return err

    def _sh(self, r: HostRun, script: str, step: str, *, sudo: bool = True,
            stdin: bytes | None = None, timeout: float | None = 1800) -> remote.Result:
        return remote.sh(r.conn, script, step=step, sudo=sudo, stdin=stdin, timeout=timeout)

    # --- phase 1 ------------------------------------------------------------------------------

    def _gather(self, r: HostRun) -> None:
        with self.rep.step(r.host.name, "facts") as s:
            r.conn = remote.open_checked(self.inv, r.host)
            nodes = [d[0] for d in self._dirs()] + [self.paths.nginx_site_enabled,
                                                     *self.paths.nginx_default_sites,
                                                     self.paths.env_file]
            files = [APT_PROXY_FILE, self.paths.env_file, self.paths.server_config,
                     self.paths.unit, self.paths.nginx_site]
            units = [self.paths.unit_name, "nginx", STOCK_UNIT, self.old_paths.unit_name]
            r.facts = facts.gather(r.conn, self.paths, packages=self.packages,
                                   user=self.app.deploy_user, nodes=nodes, files=files,
                                   units=units,
                                   lock_holder=None if self.dry else self.lock_holder)
            r.locked = bool(r.facts.raw["lock"] and r.facts.raw["lock"]["acquired"])
            os_ = r.facts.raw["os"]
            s.ok(f"{os_['id']} {os_['version']}, current release {r.facts.current or '-'}")

    # --- phase 2 ------------------------------------------------------------------------------

    def _prepare(self, r: HostRun) -> None:
        self._ensure_apt_proxy(r)
        self._ensure_packages(r)
        self._ensure_stock_unit_masked(r)
        self._ensure_user(r)
        self._ensure_dirs(r)
        self._ensure_env_file(r)
        self._ensure_release(r)

    def _ensure_apt_proxy(self, r: HostRun) -> None:
        proxy = self.inv.stage.apt_proxy
        if not proxy:
            return
        text = f'Acquire::http::Proxy "{proxy}";\n'
        with self.rep.step(r.host.name, "apt proxy") as s:
            if r.facts.file_sha(APT_PROXY_FILE) == _sha(text):
                return s.ok(proxy)
            if not self.dry:
                self._sh(r, f"cat > {APT_PROXY_FILE}", "apt proxy", stdin=text.encode())
            s.change(proxy)

    def _ensure_packages(self, r: HostRun) -> None:
        with self.rep.step(r.host.name, "packages") as s:
            missing = [p for p in self.packages if p not in r.facts.installed]
            if not missing:
                return s.ok(f"{len(self.packages)} installed")
            if not self.dry:
                age = r.facts.raw["apt_lists_age"]
                update = age is None or age > APT_LISTS_MAX_AGE
                self._sh(r, commands.apt_install_script(missing, update=update), "packages")
                r.packages_changed = True
            s.change(f"installed {' '.join(missing)}")

    def _ensure_stock_unit_masked(self, r: HostRun) -> None:
        """Debian's unicorn package ships unicorn.service (configured through
        /etc/default/unicorn). Enabled but unconfigured it fails at every boot and leaves
        the host "degraded"; ours is <app>-unicorn.service, so mask the stock one."""
        state = r.facts.unit(STOCK_UNIT)
        with self.rep.step(r.host.name, "stock unicorn") as s:
            if state["enabled"] in ("masked", "") and state["active"] != "failed" \
                    and not r.packages_changed:
                return s.ok(f"{STOCK_UNIT} {state['enabled'] or 'absent'}")
            if not self.dry:
                self._sh(r, f"systemctl mask -q --now {STOCK_UNIT} && "
                         f"systemctl reset-failed {STOCK_UNIT} 2>/dev/null; true", "stock unicorn")
            s.change(f"{STOCK_UNIT} masked (ours is {self.paths.unit_name})")

    def _ensure_user(self, r: HostRun) -> None:
        with self.rep.step(r.host.name, "deploy user") as s:
            u = self.app.deploy_user
            if r.facts.raw["user"]:
                return s.ok(u)
            if not self.dry:
                self._sh(r, f"useradd --system --create-home --home-dir /home/{u} "
                         f"--shell /bin/bash --user-group {u}", "deploy user")
            s.change(f"created {u}")

    def _ensure_dirs(self, r: HostRun) -> None:
        with self.rep.step(r.host.name, "directories") as s:
            wrong = []
            for path, owner, group, mode in self._dirs():
                n = r.facts.node(path)
                if not (n and n["dir"] and (n["owner"], n["group"], n["mode"]) ==
                        (owner, group, mode)):
                    wrong.append((path, owner, group, mode))
            if not wrong:
                return s.ok(f"{self.paths.deploy_to} layout and permissions")
            if not self.dry:
                script = " && ".join(
                    f"install -d -o {o} -g {g} -m {m} {shlex.quote(p)} && chmod {m} "
                    f"{shlex.quote(p)}" for p, o, g, m in wrong)
                self._sh(r, script, "directories")
            s.change(f"{len(wrong)} fixed: " + ", ".join(p for p, *_ in wrong))

    def _ensure_env_file(self, r: HostRun) -> None:
        with self.rep.step(r.host.name, "env file") as s:
            path = self.paths.env_file
            node = r.facts.node(path)
            if r.facts.file_sha(path) == _sha(self.env_text) and node and \
                    (node["owner"], node["mode"]) == ("root", "0600"):
                return s.ok(f"{path} (0600)")
            if not self.dry:
                # umask 077 before the file exists: it is never readable by anyone else.
                self._sh(r, f"umask 077 && cat > {path}.new && chown root:root {path}.new && "
                         f"mv {path}.new {path}", "env file", stdin=self.env_text.encode())
                r.env_changed = True
            s.change(f"{path} (0600, secrets not shown)")

    def _ensure_release(self, r: HostRun) -> None:
        cur = r.facts.current_meta
        with self.rep.step(r.host.name, "release") as s:
            if cur.get("source") == self.release_digest and cur.get("state") != "failed":
                return s.ok(f"{r.facts.current} is current (source unchanged)")
            r.release = self.release_id
            if self.dry:
                return s.change(f"would create release {r.release}")
            rel = self.paths.release(r.release)
            u = self.app.deploy_user
            links = " && ".join(
                f"rm -rf {d} && mkdir -p $(dirname {d}) && ln -s {self.paths.shared}/{d} {d}"
                for d in LINKED_DIRS)
            archive = self.source.archive()
            # Unpacked by the deploy user, private by default (umask 027); only public/ is
            # opened up to nginx.
            unpack = (f"umask 027 && cd {rel} && tar -xzf - && {links} && "
                      "(test ! -d public || chmod -R o+rX public)")
            self._sh(r, f"install -d -o {u} -g {u} -m 0711 {rel} && "
                     f"runuser -u {u} -- sh -c {shlex.quote(unpack)}", "release", stdin=archive)
            if self.storage_yml:
                self._sh(r, f"runuser -u {u} -- sh -c 'umask 027 && cat > "
                         f"{rel}/config/storage.yml'", "release",
                         stdin=self.storage_yml.encode())
            self._write_meta(r, r.release, self._meta("prepared"))
            s.change(f"{r.release} uploaded ({len(archive) // 1024} KiB, "
                     f"{len(self.source.files)} files)")
        rel = self.paths.release(r.release)
        prev = self.paths.release(r.facts.current) if r.facts.current else None
        with self.rep.step(r.host.name, "bundle") as s:
            if prev and cur.get("gems") == self.source.gems_digest and not r.packages_changed:
                self._sh(r, f"test -f {prev}/Gemfile.lock && "
                         f"cp -p {prev}/Gemfile.lock {rel}/Gemfile.lock || "
                         f"{commands.bundle_install(self.paths, rel, self.app.deploy_user)}",
                         "bundle")
                s.ok(f"Gemfile unchanged, lock reused from {r.facts.current}")
            else:
                self._sh(r, str(commands.bundle_install(self.paths, rel, self.app.deploy_user)),
                         "bundle")
                s.change("bundle install --local")
        with self.rep.step(r.host.name, "assets") as s:
            if prev and cur.get("assets") == self.source.assets_digest:
                self._sh(r, f"test -d {prev}/public/assets && "
                         f"cp -al {prev}/public/assets {rel}/public/assets", "assets")
                s.ok(f"asset inputs unchanged, reused from {r.facts.current}")
            else:
                cmd = commands.rails(self.paths, rel, self.app.deploy_user, self.app.rails_env,
                                     "assets:precompile")
                try:
                    self._sh(r, str(cmd), "assets")
                except RailsfabError as exc:
                    exc.fix = ("fix the asset error above (try `RAILS_ENV="
                               f"{self.app.rails_env} bin/rails assets:precompile` locally), "
                               "then deploy again")
                    raise
                self._sh(r, f"chmod -R o+rX {rel}/public", "assets")
                s.change(f"RAILS_ENV={self.app.rails_env} assets:precompile")

    def _abandon_releases(self) -> None:
        """A deploy that failed before the switch: move its new releases aside, kept for
        inspection, never chosen by cleanup or rollback."""
        for r in self.runs.values():
            if not r.release or self.dry or r.conn is None:
                continue
            try:
                rel = self.paths.release(r.release)
                # A first deploy has nothing to go back to: the release `current` points to
                # stays where it is (moving it would leave `current` dangling).
                self._sh(r, f"test ! -d {rel} || [ \"$(readlink {self.paths.current})\" = "
                         f"{rel} ] || mv {rel} {self.paths.failed_releases}/", "abandon")
            except RailsfabError:
                pass

    def _meta(self, state: str) -> dict:
        return {"source": self.release_digest, "gems": self.source.gems_digest,
                "assets": self.source.assets_digest,
                "migrations": self.source.migrations_digest, "state": state,
                "app_server": self.app.app_server, "rails_env": self.app.rails_env}

    def _write_meta(self, r: HostRun, release: str, meta: dict) -> None:
        path = f"{self.paths.release(release)}/.railsfab-release.json"
        self._sh(r, f"cat > {path}.new && chmod 0644 {path}.new && mv {path}.new {path}",
                 "release", stdin=json.dumps({"id": release, **meta}).encode())

    # --- phase 3 ------------------------------------------------------------------------------

    def _migrate(self) -> None:
        migrators = [r for r in self.runs.values() if "migrate" in r.host.roles]
        if not migrators:
            return
        r = migrators[0]
        with self.rep.step(r.host.name, "migrate") as s:
            cur = r.facts.current_meta
            if r.release is None or (cur.get("migrations") == self.source.migrations_digest):
                return s.ok("migrations unchanged")
            if self.dry:
                return s.change("would run db:migrate")
            cmd = commands.rails(self.paths, self.paths.release(r.release),
                                 self.app.deploy_user, self.app.rails_env, "db:migrate")
            try:
                self._sh(r, str(cmd), "migrate")
            except RailsfabError as exc:
                r.error = exc
                exc.fix = "fix the migration, then deploy again (no host switched release)"
                self._abandon_releases()
                raise self._first_error() from None
            s.change(f"RAILS_ENV={self.app.rails_env} db:migrate")

    # --- phase 4 ------------------------------------------------------------------------------

    def _activate(self, r: HostRun) -> None:
        self._ensure_server_config(r)
        self._ensure_unit(r)
        self._ensure_site(r)
        self._switch(r)
        self._ensure_server_running(r)
        self._ensure_nginx(r)
        self._verify(r)
        self._retire_old_server(r)

    def _install_file(self, r: HostRun, step: str, dest: str, text: str, *, owner: str,
                      group: str, mode: str, validate: str | None = None,
                      name: str | None = None) -> bool:
        with self.rep.step(r.host.name, step) as s:
            if r.facts.file_sha(dest) == _sha(text):
                s.ok(dest)
                return False
            if self.dry:
                s.change(f"would update {dest}")
                self._show_diff(r, dest, text)
                return True
            fname = name or dest.rsplit("/", 1)[-1]
            check = f" && {validate.format(file=f'$t/{fname}')}" if validate else ""
            self._sh(r, f"t=$(mktemp -d) && trap 'rm -rf $t' EXIT && cat > $t/{fname}"
                     f"{check} && install -o {owner} -g {group} -m {mode} $t/{fname} {dest}",
                     step, stdin=text.encode())
            s.change(dest)
            return True

    def _ensure_server_config(self, r: HostRun) -> None:
        r.server_config_changed = self._install_file(
            r, f"{self.server} config", self.paths.server_config, self.files["server_config"],
            owner="root", group=self.app.deploy_user, mode="0640", validate="ruby -c {file}")

    def _ensure_unit(self, r: HostRun) -> None:
        changed = self._install_file(
            r, f"{self.server} unit", self.paths.unit, self.files["unit"], owner="root",
            group="root", mode="0644", name=self.paths.unit_name,
            validate="systemd-analyze verify {file} >/dev/null")
        if changed and not self.dry:
            self._sh(r, "systemctl daemon-reload", f"{self.server} unit")
        r.unit_changed = changed

    def _ensure_site(self, r: HostRun) -> None:
        p = self.paths
        if not self.app.nginx:
            return self._ensure_no_site(r)
        text = self.files["site"]
        defaults = [d for d in p.nginx_default_sites if r.facts.node(d)]
        enabled = r.facts.node(p.nginx_site_enabled)
        with self.rep.step(r.host.name, "nginx site") as s:
            if (r.facts.file_sha(p.nginx_site) == _sha(text) and not defaults and enabled
                    and enabled["link"] == p.nginx_site):
                return s.ok(f"{p.nginx_site}, default site absent")
            if self.dry:
                self._show_diff(r, p.nginx_site, text)
                r.site_changed = True
                return s.change(f"would update {p.nginx_site}" +
                                (f", remove {' '.join(defaults)}" if defaults else ""))
            # Written in place but only kept if `nginx -t` accepts the whole configuration;
            # the running nginx keeps its loaded config either way until we reload it.
            self._sh(r, f"""t=$(mktemp -d) && trap 'rm -rf $t' EXIT && cat > $t/site &&
if [ -f {p.nginx_site} ]; then cp -p {p.nginx_site} $t/old; fi &&
install -m 0644 $t/site {p.nginx_site} && ln -sfn {p.nginx_site} {p.nginx_site_enabled} &&
rm -f {' '.join(p.nginx_default_sites)} &&
if ! nginx -t 2>$t/err; then
  if [ -f $t/old ]; then cp -p $t/old {p.nginx_site}; else rm -f {p.nginx_site} \
{p.nginx_site_enabled}; fi
  grep -v 'test failed' $t/err >&2; exit 1
fi""", "nginx site", stdin=text.encode())
            r.site_changed = True
            s.change(p.nginx_site + (f", removed {' '.join(defaults)}" if defaults else ""))

    def _ensure_no_site(self, r: HostRun) -> None:
        """`nginx: false`: a site left from an nginx-fronted setup would answer :80 with
        502s once its app server is gone; take it out (nginx itself may serve other sites)."""
        p = self.paths
        present = [x for x in (p.nginx_site_enabled, p.nginx_site) if r.facts.node(x)]
        with self.rep.step(r.host.name, "nginx site") as s:
            if not present:
                return s.ok(f"none (nginx: false; {self.server} answers on :{self.app.port})")
            if not self.dry:
                self._sh(r, f"rm -f {' '.join(present)} && "
                         "(! systemctl is-active -q nginx || systemctl reload nginx)",
                         "nginx site")
            s.change(f"removed {' '.join(present)} (nginx: false)")

    def _switch(self, r: HostRun) -> None:
        if not r.release:
            return
        with self.rep.step(r.host.name, "switch") as s:
            if not self.dry:
                self._point_current(r, r.release, "switch")
                r.switched_from = r.facts.current
            s.change(f"current -> releases/{r.release}")

    def _point_current(self, r: HostRun, release: str, step: str) -> None:
        self._sh(r, commands.switch_current(self.paths, release, owner=self.app.deploy_user),
                 step)

    def _ensure_server_running(self, r: HostRun) -> None:
        unit = self.paths.unit_name
        state = r.facts.unit(unit)
        with self.rep.step(r.host.name, self.server) as s:
            enable = "" if state["enabled"] == "enabled" else f"systemctl enable -q {unit} && "
            if state["active"] != "active":
                if not self.dry:
                    self._start_server(r, f"{enable}systemctl start {unit}")
                    r.server_started_at = time.monotonic()
                old = self.old_paths.unit_name
                beside = (f" beside {old} (its own socket; nginx moves over next)"
                          if r.facts.unit(old)["active"] == "active" else "")
                return s.change(f"{'would start' if self.dry else 'started'} {unit}{beside}")
            hard = [why for why, flag in (("unit", r.unit_changed),
                                           ("env file", r.env_changed)) if flag]
            soft = [why for why, flag in (("new release", r.release),
                                           ("config", r.server_config_changed)) if flag]
            if enable and not self.dry:
                self._sh(r, enable.removesuffix(" && "), self.server)
            if hard:
                # A re-exec'd master keeps its environment and unit settings: only a full
                # restart picks these up (a short gap while the server boots).
                if not self.dry:
                    self._start_server(r, f"systemctl restart {unit}")
                    r.server_started_at = time.monotonic()
                return s.change(f"restarted ({', '.join(hard + soft)} changed; full restart)")
            if soft:
                mode = self._restart_mode(r)
                if self.dry:
                    return s.change(f"would hand over ({', '.join(soft)}; {mode})")
                # A failed unicorn handover leaves the old master serving as it was; a failed
                # puma restart leaves the master in the new release's directory, so a revert
                # must restart it either way.
                r.handed_over = self.server == "puma"
                summary = appserver.restart(r.conn, self.paths, self.app, step=self.server,
                                            mode=mode)
                r.handed_over = True
                r.server_started_at = time.monotonic()
                return s.change(f"zero-downtime handover ({', '.join(soft)}): {summary}")
            if enable:
                return s.change(f"enabled; master pid {r.facts.raw['server_pid']}")
            s.ok(f"running, master pid {r.facts.raw['server_pid']}")

    def _restart_mode(self, r: HostRun) -> str:
        """Puma: phased (workers one at a time) when only the app's code changed; hot
        (the master re-execs) when its config or the gems changed, which a phased restart
        would not pick up. Unicorn has one mechanism (USR2), whatever this says."""
        gems_same = r.facts.current_meta.get("gems") == self.source.gems_digest
        return "phased" if gems_same and not r.server_config_changed else "hot"

    def _start_server(self, r: HostRun, script: str) -> None:
        try:
            self._sh(r, script, self.server, timeout=self.app.boot_timeout + 120)
        except RailsfabError as exc:
            tail = self._sh(r, f"tail -n 15 {self.paths.server_log} 2>/dev/null; "
                            f"journalctl -u {self.paths.unit_name} -n 5 --no-pager -q", self.server,
                            timeout=30).stdout.strip()
            exc.message += "\n" + tail
            exc.fix = f"see {self.paths.server_log} on {r.host.name}"
            raise

    def _revert(self, r: HostRun) -> None:
        with self.rep.step(r.host.name, "revert") as s:
            self._point_current(r, r.switched_from, "revert")
            if r.handed_over:
                appserver.restart(r.conn, self.paths, self.app, step="revert", mode="hot")
            r.reverted = True
            s.change(f"current -> releases/{r.switched_from}")

    def _parallel_revert(self) -> None:
        """After a failed activation anywhere: every host back on the release it served."""
        todo = [r for r in self.runs.values()
                if r.switched_from and not r.reverted and not self.dry]
        if not todo:
            self._abandon_releases()
            return
        with ThreadPoolExecutor(max_workers=len(todo)) as pool:
            for r, fut in [(r, pool.submit(self._revert, r)) for r in todo]:
                if fut.exception() and not r.error:
                    r.error = fut.exception()
        self._abandon_releases()

    def _recover(self, batch: list[Host]) -> None:
        """A batch whose activation failed, before it may rejoin the target group: back on
        the release it served and verified serving it; raises if not (a first deploy has
        nothing to go back to)."""
        def one(r: HostRun) -> None:
            if r.switched_from and not r.reverted:
                self._revert(r)
            self._verify(r)

        runs = [self.runs[h.name] for h in batch]
        with ThreadPoolExecutor(max_workers=len(runs)) as pool:
            errors = [f.exception() for f in [pool.submit(one, r) for r in runs]]
        failed = [e for e in errors if e]
        if failed:
            raise failed[0] if isinstance(failed[0], RailsfabError) else \
                RailsfabError(str(failed[0]), step="revert")

    def _ensure_nginx(self, r: HostRun) -> None:
        if not self.app.nginx:
            return
        state = r.facts.unit("nginx")
        with self.rep.step(r.host.name, "nginx") as s:
            enable = "" if state["enabled"] == "enabled" else "systemctl enable -q nginx && "
            if r.site_changed:
                # The package's postinst may have started nginx since the facts were read:
                # reload-or-restart is right whether it runs or not.
                if not self.dry:
                    self._sh(r, f"{enable}systemctl reload-or-restart nginx", "nginx")
                return s.change(f"{'would reload' if self.dry else 'reloaded'} (site changed)")
            if state["active"] != "active":
                if not self.dry:
                    self._sh(r, f"{enable}systemctl start nginx", "nginx")
                return s.change("started")
            s.ok("running, config unchanged")

    def _verify(self, r: HostRun) -> None:
        if self.dry:
            return
        with self.rep.step(r.host.name, "verify") as s:
            s.ok(verify.serving(r.conn, self.paths, self.app))

    def _retire_old_server(self, r: HostRun) -> None:
        """After a switch (unicorn <-> puma), once the new server verified: stop and disable
        the old one, remove its unit, config, pid file and socket, and make sure none of its
        processes is left. Nothing to do (and no step shown) on hosts that never ran it."""
        old = self.old_paths
        state = r.facts.unit(old.unit_name)
        if state["load"] != "loaded":
            return
        with self.rep.step(r.host.name, f"retire {old.app_server}") as s:
            if self.dry:
                return s.change(f"would stop and remove {old.unit_name}")
            # The old server's processes are ours (its unit started them): after the unit
            # stopped, any left over are ended by PID, and named in the output.
            pattern = "^unicorn (master|worker)" if old.app_server == "unicorn" else "^puma[ :]"
            out = self._sh(r, f"""u={old.unit_name}
# nginx's workers from before the reload may still pass requests to the old socket, and a
# server that stops resets what waits in its backlog: stop it once they are gone and
# nothing is connected to it any more (bounded).
end=$(( $(date +%s) + 60 ))
while [ "$(date +%s)" -lt "$end" ]; do
  if ! pgrep -f '^nginx: worker process is shutting down' >/dev/null \
     && ! ss -Hx state connected 2>/dev/null | grep -qF ' {old.socket} '; then break; fi
  sleep 0.1
done
systemctl disable -q --now "$u" 2>/dev/null || systemctl stop "$u" 2>/dev/null || true
rm -f {old.unit} {old.server_config} {old.pid} {old.socket}
systemctl daemon-reload && systemctl reset-failed "$u" 2>/dev/null || true
left=$(pgrep -u {self.app.deploy_user} -f '{pattern}' || true)
if [ -n "$left" ]; then
  kill -TERM $left 2>/dev/null; sleep 2
  still=$(for p in $left; do kill -0 $p 2>/dev/null && echo $p; done)
  [ -n "$still" ] && kill -KILL $still 2>/dev/null
  echo "ended $(echo $left | tr '\n' ' ')"
fi
true""", f"retire {old.app_server}").stdout.strip()
            gap = ""
            if r.server_started_at is not None and state["active"] == "active":
                both = time.monotonic() - r.server_started_at
                gap = (f"; no gap: both ran side by side for {both:.1f}s (the cost: one extra "
                       f"app boot and both servers' memory meanwhile)")
            orphans = f"; orphan processes {out}" if out else ""
            s.change(f"{old.unit_name} stopped, disabled and removed{gap}{orphans}")

    # --- phase 5 ------------------------------------------------------------------------------

    def _finalize(self, r: HostRun) -> None:
        if self.dry:
            return
        with self.rep.step(r.host.name, "releases") as s:
            current = r.release or r.facts.current
            marks = ""
            if r.release:
                meta = json.dumps({"id": r.release, **self._meta("good")})
                path = f"{self.paths.release(r.release)}/.railsfab-release.json"
                marks = f"printf '%s' {shlex.quote(meta)} > {path} && "
            keep = self.app.keep_releases
            unlock = f"rm -rf {self.paths.lock} && " if r.locked else ""
            script = (f"{unlock}{marks}cd {self.paths.releases} && ls -1 | sort | "
                      f"grep -vx {shlex.quote(current)} | head -n -{keep - 1} | "
                      "while read -r d; do rm -rf -- \"$d\" && echo \"$d\"; done")
            removed = self._sh(r, script, "releases").stdout.split()
            r.locked = False
            detail = f"{current} good; kept {keep}"
            if removed:
                s.change(f"{detail}, removed {' '.join(removed)}")
            elif r.release:
                s.change(detail)
            else:
                s.ok(f"{current} current, nothing to clean")

    # --- dry run --------------------------------------------------------------------------

    def _show_diff(self, r: HostRun, dest: str, text: str) -> None:
        old = self._sh(r, f"cat {dest} 2>/dev/null || true", "diff").stdout
        diff = difflib.unified_diff(old.splitlines(keepends=True),
                                    text.splitlines(keepends=True),
                                    f"{r.host.name}:{dest}", "rendered")
        self.rep.info("".join(diff).rstrip() or f"(new file {dest})")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
