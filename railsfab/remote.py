"""SSH to inventory hosts: Fabric connections with strict host key checking.

Fabric's Connection accepts any unknown host key (AutoAddPolicy) and does not read
known_hosts. railsfab checks every host key against the project's known_hosts file
(filled by `fab sandbox.up`, or by you after verifying a fingerprint) and refuses
unknown or changed keys, like `ssh -o StrictHostKeyChecking=yes`.
"""

from __future__ import annotations

import re
import shlex
import threading
from collections.abc import Callable
from dataclasses import dataclass

import paramiko
from fabric import Config, Connection

from railsfab.errors import RailsfabError
from railsfab.inventory import Host, Inventory
from railsfab.text import printable_lines


def connect(inv: Inventory, host: Host) -> Connection:
    """An unopened Connection to `host`; opening it verifies the host key strictly."""
    key = inv.ssh_key(host)
    if key is not None and not key.exists():
        fix = ("run `fab sandbox.up` to create it" if inv.stage.sandbox
               else f"set ssh.key in {inv.path.name} to your EC2 key pair's .pem file")
        raise RailsfabError(f"SSH key {key} does not exist", host=host.name, step="connect",
                            fix=fix)
    kwargs: dict = {"banner_timeout": 20, "auth_timeout": 20}
    if key is not None:
        kwargs.update(key_filename=[str(key)], look_for_keys=False, allow_agent=False)
    conn = Connection(
        host=host.address,
        user=inv.ssh_user(host),
        port=inv.ssh_port(host),
        connect_timeout=inv.stage.ssh.connect_timeout,
        connect_kwargs=kwargs,
        # Ignore ~/.ssh/config: the inventory is the single source of connection settings.
        # Never forward our stdin: commands read only what we pass them explicitly.
        config=Config(overrides={"load_ssh_configs": False,
                                 "run": {"hide": True, "in_stream": False}}),
    )
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    # The keys paramiko will look this host up by ("[addr]:port" off port 22), from the file
    # parsed once per process: parsing every key of it per connection cost 16 ms of CPU per
    # host (8 hosts: 0.13 s, one after another under the GIL).
    port = inv.ssh_port(host)
    name = host.address if port == 22 else f"[{host.address}]:{port}"
    mine = conn.client.get_host_keys()
    for kind, key in (_known_hosts(inv.known_hosts).lookup(name) or {}).items():
        mine.add(name, kind, key)
    conn.railsfab_host = host  # type: ignore[attr-defined]
    return conn


_parsed: dict[str, tuple[tuple, paramiko.HostKeys]] = {}
_parsed_lock = threading.Lock()


def _known_hosts(path) -> paramiko.HostKeys:
    """The known_hosts file, parsed again only when it changed (sandbox.up rewrites it)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return paramiko.HostKeys()
    stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
    with _parsed_lock:
        cached = _parsed.get(str(path))
        if cached is None or cached[0] != stamp:
            cached = _parsed[str(path)] = (stamp, paramiko.HostKeys(str(path)))
        return cached[1]


def open_checked(inv: Inventory, host: Host) -> Connection:
    """Connect now, turning SSH failures into one message with the fix."""
    conn = connect(inv, host)
    where = f"{inv.ssh_user(host)}@{host.address}:{inv.ssh_port(host)}"
    try:
        conn.open()
    except paramiko.BadHostKeyException:
        raise RailsfabError(
            f"host key of {where} does not match {inv.known_hosts}",
            host=host.name, step="connect",
            fix=("the host was rebuilt or someone is in the middle: verify its fingerprint, "
                 f"then remove the old line with `ssh-keygen -R {host.address} -f "
                 f"{inv.known_hosts}`"),
        ) from None
    except paramiko.SSHException as exc:
        if "not found in known_hosts" in str(exc):
            raise RailsfabError(
                f"{host.address} is not in {inv.known_hosts}; unknown host keys are refused",
                host=host.name, step="connect",
                fix=("`fab sandbox.up` fills it for the sandbox; for a real host, compare "
                     f"`ssh-keyscan {host.address}` with the console's fingerprint and "
                     f"append the line to {inv.known_hosts}"),
            ) from None
        raise _unreachable(inv, host, where, str(exc)) from None
    except paramiko.AuthenticationException:
        raise RailsfabError(
            f"{where} refused our key ({inv.ssh_key(host)})", host=host.name, step="connect",
            fix=f"check ssh.user and ssh.key for this stage in {inv.path.name}",
        ) from None
    except (TimeoutError, OSError) as exc:
        raise _unreachable(inv, host, where, getattr(exc, "strerror", None) or str(exc)) \
            from None
    return conn


def _unreachable(inv: Inventory, host: Host, where: str, why: str) -> RailsfabError:
    fix = ("is the sandbox up? `fab sandbox.status`" if inv.stage.sandbox
           else "check the address, the security group (22 from your IP) and that it is running")
    return RailsfabError(f"cannot reach {where}: {why}", host=host.name, step="connect", fix=fix)


class _Counter:
    """SSH round trips made by this process (bench/ reports it for a no-op deploy)."""

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.value += 1


ROUND_TRIPS = _Counter()


@dataclass
class Result:
    exited: int
    stdout: str
    stderr: str


def sh(conn: Connection, script: str, *, step: str, sudo: bool = False, stdin: bytes | None = None,
       warn: bool = False, timeout: float | None = None,
       on_line: Callable[[str], None] | None = None) -> Result:
    """Run a shell snippet on the host (as root with `sudo`); failures become RailsfabError.

    One SSH channel per call, stdin streamed whole (an archive, a secrets file): no
    per-character stdin relay and no polling sleeps. Secrets go through `stdin`, never into
    `script`, which may be shown in error messages. `on_line` sees each line of output
    (stdout and stderr) as it arrives: live progress.
    """
    cmd = f"sudo -n sh -c {shlex.quote(script)}" if sudo else script
    host = getattr(conn, "railsfab_host", None)
    name = host.name if host else None
    if not conn.is_connected:
        conn.open()
    ROUND_TRIPS.add()
    chan = conn.client.get_transport().open_session(timeout=30)
    try:
        chan.settimeout(timeout)
        chan.exec_command(cmd)
        if stdin:
            chan.sendall(stdin)
        chan.shutdown_write()
        out, err = _drain(chan, on_line)
        exited = chan.recv_exit_status()
    except TimeoutError:
        raise RailsfabError(f"`{script}` did not finish in {timeout:.0f} s", host=name,
                            step=step) from None
    finally:
        chan.close()
    result = Result(exited, out.decode(errors="replace"), err.decode(errors="replace"))
    if exited != 0 and not warn:
        tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-8:]
        raise RailsfabError(
            f"`{script}` exited {exited}" + (":\n" + "\n".join(tail) if tail else ""),
            host=name, step=step,
        )
    return result


def _drain(chan, on_line: Callable[[str], None] | None = None) -> tuple[bytes, bytes]:
    """Read stdout here and stderr in a helper thread, so neither can stall the other."""
    err = bytearray()

    def pump(recv, buf: bytearray) -> None:
        start = 0
        while data := recv(65536):
            buf.extend(data)
            if on_line is None:
                continue
            # apt and friends redraw a line with \r: each redraw is a line of progress.
            end = max(buf.rfind(b"\n"), buf.rfind(b"\r"))
            if end >= start:
                for line in re.split(rb"[\r\n]+", bytes(buf[start:end])):
                    if line.strip():
                        on_line(line.decode(errors="replace").strip())
                start = end + 1

    t = threading.Thread(target=pump, args=(chan.recv_stderr, err), daemon=True)
    t.start()
    out = bytearray()
    pump(chan.recv, out)
    t.join()
    return bytes(out), bytes(err)


def checked_script(conn: Connection, script: str, env: dict[str, str], *, step: str,
                   timeout: float, failures: dict[int, str | tuple[str, str]], fix: str,
                   on_line: Callable[[str], None] | None = None) -> list[str]:
    """Run a bash `script` as root with `env`; it reports success as a last line
    "ok FIELD..." (returned split), failure as its exit status (`failures` says what it
    means, alone or with its own fix) with its last lines as evidence."""
    assigns = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    r = sh(conn, f"sudo -n env {assigns} bash -s", step=step, stdin=script.encode(),
           warn=True, timeout=timeout, on_line=on_line)
    lines = r.stdout.strip().splitlines()
    if r.exited == 0 and lines and lines[-1].startswith("ok "):
        return lines[-1].split(" ")[1:]
    what = failures.get(r.exited, f"the {step} script exited {r.exited}")
    if isinstance(what, tuple):  # a failure with its own fix
        what, fix = what
    detail = printable_lines(lines + r.stderr.strip().splitlines()[-5:])
    host = getattr(conn, "railsfab_host", None)
    err = RailsfabError(f"{what}\n{detail}".strip(), host=host.name if host else None,
                        step=step, fix=fix)
    err.exited = r.exited
    raise err
