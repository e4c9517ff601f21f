"""The sandbox network: one bridge on this machine, one network namespace per host.

Each host's eth0 lives in its own namespace, joined to the bridge by a veth pair; the
bridge holds the gateway address where the apt proxy and the AWS endpoint listen. No
forwarding or NAT: the hosts reach nothing but each other and the gateway.
"""

from __future__ import annotations

from pathlib import Path

from railsfab.local import run

STEP = "network"


def _ip(*args: str, check: bool = True):
    return run(["ip", *args], step=STEP, check=check)


def link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def netns_exists(ns: str) -> bool:
    return Path(f"/run/netns/{ns}").exists()


def ensure_bridge(bridge: str, gateway: str, prefixlen: int) -> bool:
    """Bridge up with the gateway address; True if anything had to be done."""
    changed = False
    if not link_exists(bridge):
        _ip("link", "add", bridge, "type", "bridge")
        changed = True
    cidr = f"{gateway}/{prefixlen}"
    if cidr not in _ip("-o", "addr", "show", "dev", bridge).stdout.decode():
        _ip("addr", "add", cidr, "dev", bridge)
        changed = True
    if "UP" not in _ip("-o", "link", "show", bridge).stdout.decode().split(">")[0]:
        _ip("link", "set", bridge, "up")
        changed = True
    return changed


def remove_bridge(bridge: str) -> bool:
    if link_exists(bridge):
        _ip("link", "del", bridge)
        return True
    return False


def host_link_ok(ns: str, veth: str, address: str, prefixlen: int) -> bool:
    if not (netns_exists(ns) and link_exists(veth)):
        return False
    out = _ip("-n", ns, "-o", "addr", "show", "dev", "eth0", check=False).stdout.decode()
    return f"{address}/{prefixlen}" in out


def create_host_link(ns: str, veth: str, bridge: str, address: str, prefixlen: int,
                     gateway: str) -> None:
    remove_host_link(ns, veth)
    _ip("netns", "add", ns)
    _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
    _ip("link", "set", veth, "master", bridge)
    _ip("link", "set", veth, "up")
    _ip("-n", ns, "addr", "add", f"{address}/{prefixlen}", "dev", "eth0")
    _ip("-n", ns, "link", "set", "eth0", "up")
    _ip("-n", ns, "link", "set", "lo", "up")
    _ip("-n", ns, "route", "add", "default", "via", gateway)


def remove_host_link(ns: str, veth: str) -> bool:
    """Delete a host's veth and namespace, including leftovers of a killed run."""
    changed = False
    if link_exists(veth):
        _ip("link", "del", veth)
        changed = True
    if netns_exists(ns):
        _ip("netns", "del", ns)
        changed = True
    return changed


# Every container's systemd, journald and udev take inotify instances, which Linux counts per
# user (root, for all of them) and caps at 128 by default: a dozen hosts on one machine run
# out, and their .path units fail at boot ("degraded").
INOTIFY = {"/proc/sys/fs/inotify/max_user_instances": 4096,
           "/proc/sys/fs/inotify/max_user_watches": 524288}


def ensure_inotify_limits() -> bool:
    """Raise this machine's inotify limits to what many containers need; True if raised."""
    raised = False
    for path, wanted in INOTIFY.items():
        try:
            with open(path) as f:
                current = int(f.read())
            if current < wanted:
                with open(path, "w") as f:
                    f.write(str(wanted))
                raised = True
        except OSError:  # not ours to change (a restricted container): boot and see
            pass
    return raised
