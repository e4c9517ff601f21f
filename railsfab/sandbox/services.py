"""Processes the sandbox runs on the bridge gateway: the apt proxy (a .deb cache in front of
tinyproxy) and the AWS endpoint."""

from __future__ import annotations

import re
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from railsfab.errors import RailsfabError
from railsfab.local import PidFile, log_tail, port_open, start_daemon, wait_for
from railsfab.sandbox.image import local_debian_mirror


@dataclass(frozen=True)
class Service:
    name: str
    address: str
    port: int
    pidfile: PidFile
    log: Path

    def running(self) -> bool:
        return self.pidfile.live_pid() is not None and self.ready()

    def ready(self) -> bool:
        return port_open(self.address, self.port)

    def wait_ready(self, timeout: float = 30) -> None:
        def ok() -> bool:
            if self.pidfile.live_pid() is None:
                raise RailsfabError(
                    f"{self.name} exited while starting: {log_tail(self.log)}",
                    step=self.name,
                    fix=f"see {self.log}; is {self.address}:{self.port} used by another program?",
                )
            return self.ready()

        if not wait_for(ok, timeout):
            self.pidfile.stop()
            raise RailsfabError(f"{self.name} did not answer on {self.address}:{self.port} "
                                f"within {timeout:.0f} s", step=self.name, fix=f"see {self.log}")

    def stop(self) -> bool:
        return self.pidfile.stop(timeout=10)


class AptProxy(Service):
    """tinyproxy on the gateway: the hosts' only way out, and only to the Debian mirror."""

    def start(self, state: Path, subnet: str) -> None:
        conf = state / "tinyproxy.conf"
        filt = state / "tinyproxy.filter"
        filt.write_text("\n".join(f"^{re.escape(h)}$" for h in mirror_hosts()) + "\n")
        conf.write_text(
            "\n".join([
                "User nobody", "Group nogroup",
                f"Port {self.port}", f"Listen {self.address}",
                f"Allow {subnet}",
                "Timeout 600", "MaxClients 200",
                "ConnectPort 443",
                "DisableViaHeader Yes",
                f'Filter "{filt}"', "FilterType ere", "FilterDefaultDeny Yes",
                "LogLevel Notice",
            ]) + "\n"
        )
        start_daemon(["tinyproxy", "-d", "-c", conf], pidfile=self.pidfile, log=self.log)
        self.wait_ready()


class DebCache(Service):
    """The hosts' apt proxy: keeps every .deb in the machine's shared pool (deb_cache), the
    rest goes on to tinyproxy at `upstream`."""

    def start(self, upstream: Service, pool: Path, seed: Path) -> None:
        pool.mkdir(parents=True, exist_ok=True)
        start_daemon([sys.executable, "-m", "railsfab.sandbox.deb_cache", self.address,
                      str(self.port), upstream.address, str(upstream.port), pool, seed],
                     pidfile=self.pidfile, log=self.log)
        self.wait_ready()


class AwsEndpoint(Service):
    """moto in server mode: ELBv2, S3, EC2, CloudFormation... over real HTTP."""

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def start(self) -> None:
        start_daemon(
            [sys.executable, "-m", "moto.server", "-H", self.address, "-p", str(self.port)],
            pidfile=self.pidfile, log=self.log,
        )
        self.wait_ready()


class SmtpSink(Service):
    """An SMTP server on the gateway that delivers nothing: every message the apps send is
    kept in a Maildir (aiosmtpd's Mailbox handler), read with `fab sandbox.mail`."""

    def start(self, maildir: Path) -> None:
        maildir.parent.mkdir(parents=True, exist_ok=True)
        start_daemon([sys.executable, "-m", "aiosmtpd", "-n", "-l",
                      f"{self.address}:{self.port}", "-c", "aiosmtpd.handlers.Mailbox",
                      str(maildir)], pidfile=self.pidfile, log=self.log)
        self.wait_ready()


def mirror_hosts() -> list[str]:
    """Host names the sandbox may fetch packages from: the Debian mirror this machine uses."""
    mirror = local_debian_mirror()
    host = urlparse(mirror).hostname if mirror else None
    if not host:
        raise RailsfabError(
            "no Debian mirror found in /etc/apt/sources.list{,.d/*}",
            step="apt proxy",
            fix="add your Debian mirror to apt's sources; the sandbox proxies only to it",
        )
    return [host]
