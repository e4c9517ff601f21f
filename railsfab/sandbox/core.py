"""`fab sandbox.up/down/status`: EC2-like hosts on this machine for a sandbox stage.

The stage in hosts.yaml is the single source of truth: its hosts (names, addresses, roles),
ssh user and key path, database settings and the sandbox block (bridge, subnet, gateway,
ports) decide what is built, so `fab deploy` against the same stage needs no editing.
Every step is idempotent: a second `up` finds everything in place and changes nothing.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from railsfab import aws
from railsfab.errors import ConfigError, RailsfabError
from railsfab.inventory import Host, Inventory
from railsfab.local import PidFile, port_open, run
from railsfab.report import Reporter
from railsfab.sandbox import database, fleet, gem_mirror, image, network
from railsfab.sandbox.boot import Booter
from railsfab.sandbox.gem_mirror import GemMirror
from railsfab.sandbox.machine import Machine
from railsfab.sandbox.services import AptProxy, AwsEndpoint, DebCache, Service, SmtpSink
from railsfab.secrets import ensure_generated

REQUIRED_TOOLS = ("debootstrap", "systemd-nspawn", "tinyproxy", "ip", "ssh-keygen", "cp")
SECRET_KEYS = {"SECRET_KEY_BASE": 64, "DATABASE_PASSWORD": 16}
DEB_POOL = "deb-pool"  # beside the image cache: the .debs every sandbox's apt proxy keeps
CONTROL_DIR = ".cache/railsfab-ssh"  # ssh's shared connections to the sandbox hosts


@dataclass
class HostStatus:
    name: str
    address: str
    roles: str
    state: str
    detail: str


class Sandbox:
    def __init__(self, inv: Inventory, rep: Reporter) -> None:
        if inv.stage.sandbox is None:
            raise ConfigError(
                f"{inv.path.name}: stage '{inv.stage_name}' has no 'sandbox:' block; the "
                "sandbox tasks only build local hosts for sandbox stages",
                fix="use --stage sandbox (or another stage with a sandbox: block)",
            )
        if not inv.stage.ssh.key:
            raise ConfigError(f"{inv.path.name}: stages.{inv.stage_name}.ssh.key: a sandbox "
                              "stage needs a key path (sandbox.up creates the key there)")
        self.inv = inv
        self.rep = rep
        self.cfg = inv.stage.sandbox
        self.net = ipaddress.ip_network(self.cfg.subnet)
        self.dir = inv.state_dir / "sandbox" / inv.stage_name
        self.key = inv.resolve(inv.stage.ssh.key)
        self.hosts = fleet.hosts(inv)  # the stage's, and its unlisted instances
        self._known_lock = threading.Lock()
        run_dir, log_dir = self.dir / "run", self.dir / "log"
        gw = self.cfg.gateway
        # The hosts' apt proxy (proxy_port) is the .deb cache; tinyproxy, the way out to the
        # Debian mirror, listens on the next port for it.
        self.proxy = AptProxy("egress proxy", gw, self.cfg.proxy_port + 1,
                              PidFile(run_dir / "tinyproxy.pid"),
                              log_dir / "tinyproxy.log")
        self.debs = DebCache("apt proxy", gw, self.cfg.proxy_port,
                             PidFile(run_dir / "debcache.pid"), log_dir / "debcache.log")
        self.aws = AwsEndpoint("aws endpoint", gw, self.cfg.aws_port,
                               PidFile(run_dir / "moto.pid"),
                               log_dir / "moto.log")
        self.smtp = SmtpSink("mail sink", gw, self.cfg.smtp_port, PidFile(run_dir / "smtp.pid"),
                             log_dir / "smtp.log")
        mirror = self.cfg.gem_mirror
        self.gems = GemMirror("gem mirror", gw, mirror.port, PidFile(run_dir / "gems.pid"),
                              log_dir / "gems.log") if mirror else None
        self.machines = {
            h.name: Machine(
                name=h.name,
                address=h.address,
                root=self.dir / "hosts" / h.name,
                netns=f"rf-{self.cfg.bridge}-{h.name}",
                veth=f"{self.cfg.bridge}v{i}",
                pidfile=PidFile(run_dir / f"{h.name}.pid"),
                log=log_dir / f"{h.name}.log",
            )
            for i, h in enumerate(self.hosts)
        }
        self.booter = Booter(self)
        ports = {self.cfg.aws_port: "aws_port", self.cfg.smtp_port: "smtp_port",
                 **({mirror.port: "gem_mirror.port"} if mirror else {})}
        if self.cfg.proxy_port + 1 in ports:
            raise ConfigError(
                f"{inv.path.name}: stages.{inv.stage_name}.sandbox.proxy_port: "
                f"{self.cfg.proxy_port + 1} (tinyproxy's, behind the apt proxy) is "
                f"{ports[self.cfg.proxy_port + 1]}", fix="choose another proxy_port")

    @property
    def suite(self) -> str:
        """The Debian release the stage's hosts run (sandbox.debian: 12 or 13)."""
        return image.SUITES[self.cfg.debian]

    # --- up --------------------------------------------------------------------------

    def up(self) -> None:
        self._check_machine()
        rep = self.rep
        with rep.step("local", "base image") as s:
            path, built = image.ensure_image(self.dir / "log" / "image.log", self.suite)
            s.set(built, f"built {path}" if built else f"cached {path.name}")
        with rep.step("local", "ssh key") as s:
            s.set(self._ensure_key(), str(self._rel(self.key)))
        if self.inv.stage.app.secrets_file:
            with rep.step("local", "secrets") as s:
                f = self.inv.resolve(self.inv.stage.app.secrets_file)
                s.set(ensure_generated(f, SECRET_KEYS), f"{self._rel(f)} (0600)")
        with rep.step("local", "inotify") as s:
            s.set(network.ensure_inotify_limits(), "enough inotify instances for the hosts' "
                  "systemd")
        with rep.step("local", "bridge") as s:
            changed = network.ensure_bridge(self.cfg.bridge, self.cfg.gateway,
                                            self.net.prefixlen)
            s.set(changed, f"{self.cfg.bridge} {self.cfg.gateway}/{self.net.prefixlen}")
        self._ensure_service(self.proxy, lambda: self.proxy.start(self.dir, self.cfg.subnet),
                             f"tinyproxy on {self.proxy.address}:{self.proxy.port}, to the "
                             "Debian mirror only")
        pool = image.cache_dir().parent
        self._ensure_service(self.debs, lambda: self.debs.start(
            self.proxy, pool / DEB_POOL, pool / "apt-archives"),
            f"{self.debs.address}:{self.debs.port}, .debs kept in {pool / DEB_POOL}")
        with rep.step("local", "aws endpoint") as s:
            if self.aws.running():
                s.ok(self.aws.url)
            else:
                self.aws.stop()
                self.aws.start()
                s.change(self.aws.url)
        self._ensure_service(self.smtp, lambda: self.smtp.start(self.maildir),
                             f"SMTP on {self.smtp.address}:{self.smtp.port}, messages kept in "
                             f"{self._rel(self.maildir)} (fab sandbox.mail)")
        if self.gems is not None:
            with rep.step("local", "gem mirror") as s:
                extra = self.cfg.gem_mirror.extra
                s.set(*gem_mirror.ensure_served(
                    self.gems, self.suite, self.cfg.gem_mirror.packages, self.dir,
                    self.inv.resolve(extra) if extra else None))
        with rep.step("local", "aws records") as s:
            s.set(*fleet.aws_records(self.inv, self.hosts, self.aws_ids_file))
        domain = self.inv.stage.aws.certificate_domain
        if domain:
            with rep.step("local", "certificate") as s:
                s.set(*aws.ensure_sandbox_certificate(aws.clients(self.inv), domain))
        hosts = self.hosts
        with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
            errors = [f.exception() for f in [pool.submit(self._up_host, h) for h in hosts]]
        with rep.step("local", "ssh config") as s:
            s.set(self._write_ssh_config(), str(self._rel(self.ssh_config)))
        failed = [e for e in errors if e]
        if failed:
            raise failed[0]

    def _ensure_service(self, svc: Service, start, what: str) -> None:
        with self.rep.step("local", svc.name) as s:
            if svc.running():
                s.ok(what)
            else:
                svc.stop()  # ours, by PID, if it runs but does not answer where it should
                start()
                s.change(what)

    def _up_host(self, host: Host) -> None:
        m = self.machines[host.name]
        conn = None
        with self.rep.step(host.name, "boot") as s:
            if self._host_healthy(m):
                m.record_instance_id(self.instance_id(m.name))
                s.ok(f"running, {host.address}")
            else:
                conn, tries = self.booter.fresh(host)
                s.change(f"booted, {host.address}" + (
                    f" (on attempt {len(tries) + 1}: before, {'; '.join(tries)})"
                    if tries else ""))
        with self.rep.step(host.name, "ssh") as s:
            conn = conn or self.booter.connect(host)
            s.ok(f"{self.inv.ssh_user(host)}@{host.address}, systemd running")
        try:
            if "db" in host.roles and self.inv.stage.app.database:
                with self.rep.step(host.name, "database") as s:
                    s.set(*database.ensure(self.inv, conn))
        finally:
            conn.close()

    def recreate(self, names: list[str]) -> None:
        """Fresh copies of these hosts, as if just launched (benchmarks, tests)."""

        def one(name: str) -> None:
            host = next(h for h in self.hosts if h.name == name)
            self.booter.fresh(host)[0].close()

        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            list(pool.map(one, names))

    def _host_healthy(self, m: Machine) -> bool:
        if m.running_pid is None:
            return False
        if not network.host_link_ok(m.netns, m.veth, m.address, self.net.prefixlen):
            return False
        lines = set(m.host_key_lines())
        return bool(lines) and lines <= set(self._known_lines()) and port_open(m.address, 22)

    # --- down ------------------------------------------------------------------------

    def down(self) -> None:
        """Stop everything this sandbox started (by PID) and remove hosts, namespaces, links."""
        self._require_root()

        def host_down(m: Machine) -> None:
            with self.rep.step(m.name, "remove") as s:
                stopped = m.stop()
                unlinked = network.remove_host_link(m.netns, m.veth)
                removed = m.remove_files()
                self._set_known_hosts(m.address, [])
                s.set(stopped or unlinked or removed,
                      "stopped and removed" if stopped else
                      ("leftovers removed" if unlinked or removed else "not present"))

        with ThreadPoolExecutor(max_workers=len(self.machines)) as pool:
            list(pool.map(host_down, self.machines.values()))
        for svc in (self.aws, self.smtp, self.debs, self.proxy, self.gems):
            if svc is not None:
                with self.rep.step("local", svc.name) as s:
                    s.set(svc.stop(), "stopped")
        with self.rep.step("local", "bridge") as s:
            s.set(network.remove_bridge(self.cfg.bridge), f"{self.cfg.bridge} removed")
        self.ssh_config.unlink(missing_ok=True)
        shutil.rmtree(self.dir / "hosts", ignore_errors=True)

    # --- status ----------------------------------------------------------------------

    def status(self) -> list[HostStatus]:
        rows = []
        for svc in (self.debs, self.proxy, self.aws, self.gems):
            if svc is None:
                continue
            name, pid = svc.name, svc.pidfile.live_pid()
            state = "running" if pid and svc.ready() else ("not answering" if pid else "stopped")
            where = getattr(svc, "url", f"{svc.address}:{svc.port}")
            rows.append(HostStatus(name, where, "-", state, f"pid {pid}" if pid else ""))
        for h in self.hosts:
            m = self.machines[h.name]
            pid = m.running_pid
            if pid is None:
                state, detail = "stopped", ""
            elif port_open(h.address, 22):
                state, detail = "running", f"pid {pid}, ssh {self.inv.ssh_user(h)}@{h.address}"
            else:
                state, detail = "booting/unreachable", f"pid {pid}, no answer on :22"
            rows.append(HostStatus(h.name, h.address, ",".join(h.roles), state, detail))
        return rows

    # --- helpers ---------------------------------------------------------------------

    @property
    def aws_ids_file(self) -> Path:
        """VPC, subnet, route table and instance ids the sandbox's AWS endpoint assigned."""
        return self.dir / "aws.json"

    def instance_id(self, name: str) -> str | None:
        """The host's instance record in the sandbox's AWS endpoint (web hosts have one)."""
        try:
            return json.loads(self.aws_ids_file.read_text()).get("instances", {}).get(name)
        except (OSError, ValueError):
            return None

    @property
    def maildir(self) -> Path:
        return self.dir / "mail"

    @property
    def ssh_config(self) -> Path:
        return self.dir / "ssh_config"

    def _check_machine(self) -> None:
        self._require_root()
        missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
        if missing:
            raise RailsfabError(f"missing on this machine: {', '.join(missing)}",
                                step="prerequisites", fix="run `scripts/setup` as root")
        if importlib.util.find_spec("moto") is None:
            raise RailsfabError("moto is not installed in this Python", step="prerequisites",
                                fix="pip install -e '.[sandbox]'")

    def _require_root(self) -> None:
        if os.geteuid() != 0:
            raise RailsfabError("the sandbox needs root (network namespaces, systemd-nspawn)",
                                step="prerequisites", fix="run it as root, e.g. with sudo")

    def _ensure_key(self) -> bool:
        if self.key.exists() and self.key.with_suffix(".pub").exists():
            return False
        self.key.parent.mkdir(parents=True, exist_ok=True)
        self.key.unlink(missing_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
             f"railsfab-{self.inv.stage_name}", "-f", self.key], step="ssh key")
        return True

    def _etc_hosts(self, name: str) -> str:
        lines = ["127.0.0.1\tlocalhost", f"127.0.1.1\t{name}",
                 "::1\tlocalhost ip6-localhost ip6-loopback",
                 f"{self.cfg.gateway}\tsandbox-gateway"]
        lines += [f"{h.address}\t{h.name}" for h in self.hosts if h.name != name]
        return "\n".join(lines) + "\n"

    def _known_lines(self) -> list[str]:
        try:
            return self.inv.known_hosts.read_text().splitlines()
        except FileNotFoundError:
            return []

    def _set_known_hosts(self, address: str, lines: list[str]) -> None:
        """Replace this address's entries in the project's known_hosts."""
        with self._known_lock:
            path = self.inv.known_hosts
            keep = [ln for ln in self._known_lines() if ln.split(" ", 1)[0] != address]
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            with os.fdopen(fd, "w") as f:
                f.write("".join(f"{ln}\n" for ln in keep + lines))
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)

    def _write_ssh_config(self) -> bool:
        """ssh/testinfra settings for the hosts: `ssh -F <file> web1` just works."""
        blocks = []
        for h in self.hosts:
            blocks.append("\n".join([
                f"Host {h.name} {h.address}",
                f"  HostName {h.address}",
                f"  User {self.inv.ssh_user(h)}",
                f"  Port {self.inv.ssh_port(h)}",
                f"  IdentityFile {self.key}",
                "  IdentitiesOnly yes",
                f"  UserKnownHostsFile {self.inv.known_hosts}",
                "  StrictHostKeyChecking yes",
                "  ConnectTimeout 10",
                # One TCP+SSH handshake per host for a burst of commands (testinfra runs one
                # ssh per check); the master exits by itself 30 s after the last use.
                "  ControlMaster auto",
                # a private folder of the user's (a /tmp name others could take first), short
                # enough for a socket path
                f"  ControlPath ~/{CONTROL_DIR}/%C",
                "  ControlPersist 30s",
            ]))
        (Path.home() / CONTROL_DIR).mkdir(mode=0o700, parents=True, exist_ok=True)
        text = "# written by `fab sandbox.up`\n" + "\n\n".join(blocks) + "\n"
        if self.ssh_config.exists() and self.ssh_config.read_text() == text:
            return False
        self.ssh_config.parent.mkdir(parents=True, exist_ok=True)
        self.ssh_config.write_text(text)
        return True

    def _rel(self, p: Path) -> Path:
        try:
            return p.relative_to(self.inv.root)
        except ValueError:
            return p


