"""`fab rails` and `fab logs`: a Rails command or console in `current`, and the app's logs,
on the stage's hosts.

A Rails command runs as the deploy user in `current`, with RAILS_ENV explicit and the env
file loaded by root before it drops to that user (secrets never appear on a command line),
on the migrate host unless told otherwise. Logs are the app server's, Rails' and nginx's,
each line prefixed with its host; `follow` keeps reading until Ctrl-C.
"""

from __future__ import annotations

import os
import select
import shlex
import shutil
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from railsfab import commands, remote
from railsfab.errors import RailsfabError
from railsfab.inventory import Host, Inventory
from railsfab.ops import release
from railsfab.ops.desired import Serving
from railsfab.text import safe


def pick_hosts(inv: Inventory, *, only: str | None, all_hosts: bool) -> list[Host]:
    """--only, else --all web hosts, else the migrate host (else the first web host)."""
    web = inv.hosts(role="web", only=only)
    if only or all_hosts:
        return web
    migrator = [h for h in inv.hosts(role="migrate") if h in web]
    return migrator[:1] or web[:1]


def rails_script(s: Serving, argv: list[str]) -> str:
    return str(commands.rails(s.paths, s.paths.current, s.app.deploy_user, s.app.rails_env,
                              *argv))


def open_public_script(s: Serving) -> str:
    """After a Rails command: what it wrote into public/ (assets:precompile's output) made
    readable by nginx, as the deploy's assets step does. Rails commands run with umask 0007
    (what they write in shared/ stays the app's to write); only public/ is opened up."""
    cur = s.paths.current
    script = f"test ! -d {cur}/public || {{ {release.open_public(cur)}; }}"
    return f"runuser -u {s.app.deploy_user} -- sh -c {shlex.quote(script)}"


class _Printer:
    """Output lines of several hosts, whole lines, each with its host (when more than one)."""

    def __init__(self, hosts: list[Host], *, always: bool = False) -> None:
        self.prefix = always or len(hosts) > 1
        self.width = max(len(h.name) for h in hosts)
        self.lock = threading.Lock()

    def line(self, host: str, text: str) -> None:
        with self.lock:
            sys.stdout.write((f"{host:<{self.width}} | " if self.prefix else "") + safe(text)
                             + "\n")
            sys.stdout.flush()


def run_rails(inv: Inventory, argv: list[str], *, only: str | None = None,
              all_hosts: bool = False) -> None:
    """`bin/rails ARGV` on each chosen host; raises if it fails anywhere."""
    if not argv:
        raise RailsfabError("no Rails command given", step="rails",
                            fix="e.g. `fab rails -- db:seed` or `fab rails --console`")
    s = Serving.of(inv.stage)
    hosts = pick_hosts(inv, only=only, all_hosts=all_hosts)
    out = _Printer(hosts)
    script = rails_script(s, argv)

    def one(host: Host) -> int:
        conn = remote.open_checked(inv, host)
        try:
            r = remote.sh(conn, script, sudo=True, step="rails", warn=True, timeout=None,
                          on_line=lambda text: out.line(host.name, text))
            if s.app.nginx:  # even after a failure: what it wrote stays, and nginx serves it
                _open_public(conn, s, host)
            return r.exited
        finally:
            conn.close()

    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        codes = dict(zip([h.name for h in hosts], pool.map(one, hosts), strict=True))
    failed = {h: c for h, c in codes.items() if c != 0}
    if failed:
        raise RailsfabError(
            f"`bin/rails {shlex.join(argv)}` exited " + ", ".join(
                f"{c} on {h}" for h, c in failed.items()), step="rails",
            state="whatever the command changed before it failed stays changed",
            fix="read its output above")


def _open_public(conn, s: Serving, host: Host) -> None:
    try:
        remote.sh(conn, open_public_script(s), sudo=True, step="rails", timeout=300)
    except RailsfabError as exc:
        exc.host = host.name
        exc.state = "what the command wrote into public/ may not be readable by nginx"
        exc.fix = (f"{s.paths.current}/public must be a folder: find what replaced it with a "
                   "link (railsfab follows no link it did not make)")
        raise


def console(inv: Inventory, *, only: str | None = None) -> int:
    """An interactive `bin/rails console` on one host, in a terminal of its own."""
    hosts = pick_hosts(inv, only=only, all_hosts=False)
    if len(hosts) != 1:
        raise RailsfabError("a console runs on one host", step="console",
                            fix=f"choose one: --only {hosts[0].name}")
    s = Serving.of(inv.stage)
    conn = remote.open_checked(inv, hosts[0])
    try:
        chan = conn.client.get_transport().open_session()
        size = shutil.get_terminal_size()
        chan.get_pty(term=os.environ.get("TERM", "xterm"), width=size.columns,
                     height=size.lines)
        chan.exec_command("sudo -n sh -c " + shlex.quote(rails_script(s, ["console"])))
        _relay(chan)
        return chan.recv_exit_status()
    finally:
        conn.close()


def _relay(chan) -> None:
    """Keys to the remote terminal, its output to ours, until the console exits."""
    stdin = sys.stdin
    raw = stdin.isatty()
    if raw:
        import termios
        import tty

        saved = termios.tcgetattr(stdin)
        tty.setraw(stdin.fileno())
    try:
        while True:
            ready, _, _ = select.select([chan, stdin], [], [])
            if chan in ready:
                data = chan.recv(4096)
                if not data:
                    break
                os.write(sys.stdout.fileno(), data)
            if stdin in ready:
                data = os.read(stdin.fileno(), 1024)
                if not data:
                    chan.shutdown_write()
                    continue
                chan.sendall(data)
    finally:
        if raw:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)


def log_files(s: Serving) -> list[str]:
    p = s.paths
    files = [p.server_log, p.server_stdout, p.rails_log(s.app.rails_env)]
    if s.app.nginx:
        files += nginx_logs(s)
    return files


def nginx_logs(s: Serving) -> list[str]:
    """nginx's errors (all sites share them) and the app's own access log."""
    return ["/var/log/nginx/error.log", s.paths.nginx_access_log]


def logs_script(s: Serving, *, lines: int, follow: bool) -> str:
    """`tail` of the app's logs as the app's user (they are in its folder: a link there to
    /etc/shadow shows nothing), of nginx's as root; each started at once when following."""
    tail = f"tail -n {int(lines)}{' -F' if follow else ''}"
    nginx = nginx_logs(s)
    app = " ".join(shlex.quote(f) for f in log_files(s) if f not in nginx)
    parts = [f"runuser -u {s.app.run_user} -- {tail} {app} 2>/dev/null"]
    if s.app.nginx:
        parts.append(f"{tail} {' '.join(shlex.quote(f) for f in nginx)} 2>/dev/null")
    return (" & ".join(parts) + " & wait" if follow else "; ".join(parts)) + "; true"


def logs(inv: Inventory, *, only: str | None = None, lines: int = 20,
         follow: bool = False) -> None:
    """The last `lines` of each log on every web host (and, with `follow`, what comes)."""
    s = Serving.of(inv.stage)
    hosts = inv.hosts(role="web", only=only)
    out = _Printer(hosts, always=True)
    script = logs_script(s, lines=lines, follow=follow)

    def one(host: Host) -> None:
        conn = remote.open_checked(inv, host)
        try:
            remote.sh(conn, script, sudo=True, step="logs", timeout=None,
                      on_line=lambda text: out.line(host.name, text))
        finally:
            conn.close()

    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        for f in [pool.submit(one, h) for h in hosts]:
            f.result()
