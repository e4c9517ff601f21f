"""Everything a command needs to know about a host, read in one SSH round trip.

railsfab/onhost/facts.py runs as root (python3 is on every Debian/Ubuntu EC2 image) and
prints one JSON document; with a lock request it takes the deploy lock in the same trip.
Operations compare the facts with the wanted state and plan only the commands still needed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from railsfab import onhost, remote
from railsfab.errors import RailsfabError
from railsfab.paths import Paths
from railsfab.text import printable

INSTANCE_ID = re.compile(r"i-[0-9a-f]{8,17}")
# What railsfab names a release (its UTC time to the second). The deploy user can make any
# folder under releases/ and point `current` anywhere: a name of another shape never reaches
# a command (it would be pasted into root's shell and into other hosts' paths).
RELEASE_ID = re.compile(r"[0-9]{14}")
_DIGEST = re.compile(r"[0-9a-f]{64}")
# A release's ledger (.railsfab-release.json, the deploy user's file): the keys railsfab
# writes, each in the shape it writes; anything else is dropped.
LEDGER = {"id": RELEASE_ID, "source": _DIGEST, "gems": _DIGEST, "assets": _DIGEST,
          "migrations": _DIGEST, "state": re.compile(r"prepared|good|failed"),
          "app_server": re.compile(r"unicorn|puma"),
          "rails_env": re.compile(r"[A-Za-z0-9_-]{1,64}")}
NGINX_PID_FILE = "/run/nginx.pid"
# A config path counts as changed after nginx loaded only when its mtime is this much later
# than the newest nginx process: process start times are read to 10 ms, and no step writes
# the config this soon after a reload (they write, then reload).
LOAD_SLACK = 0.5


@dataclass(frozen=True)
class Spec:
    """What to read: package states, users, nodes (stat), file hashes, file texts (for
    dry-run diffs: never the env file), systemd units."""

    packages: tuple[str, ...] = ()
    user: str = ""
    app_user: str = ""  # the app's own user (app.app_user)
    nodes: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    texts: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    bundle: str = ""  # BUNDLE_PATH (app.gems: bundler): which Ruby ABIs it holds gems for
    # nginx's config paths the app owns: were they changed after the running nginx loaded?
    nginx: tuple[str, ...] = ()


@dataclass
class Facts:
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def installed(self) -> set[str]:
        return set(self.raw.get("installed", {}))

    @property
    def ruby(self) -> dict | None:
        """{version, package, installed}: the host's Ruby, or the one apt would install."""
        return self.raw.get("ruby")

    def node(self, path: str) -> dict | None:
        return self.raw.get("nodes", {}).get(path)

    def file_sha(self, path: str) -> str | None:
        return self.raw.get("files", {}).get(path)

    def text(self, path: str) -> str | None:
        return self.raw.get("texts", {}).get(path)

    @property
    def releases(self) -> dict[str, dict]:
        return self.raw.get("releases", {})

    @property
    def current(self) -> str | None:
        return self.raw.get("current")

    @property
    def current_meta(self) -> dict:
        return self.releases.get(self.current or "", {})

    def unit(self, name: str) -> dict[str, str]:
        return self.raw.get("units", {}).get(
            name, {"active": "", "enabled": "", "load": "", "main_pid": ""})

    def nginx_not_loaded(self) -> list[str] | None:
        """The config paths (Spec.nginx) changed after the running nginx last read its
        config; None when no running nginx master was found (or the facts did not say)."""
        n = self.raw.get("nginx")
        if not isinstance(n, dict) or not isinstance(n.get("loaded"), (int, float)):
            return None
        mtimes = n.get("mtimes") if isinstance(n.get("mtimes"), dict) else {}
        return [p for p, m in mtimes.items()
                if isinstance(m, (int, float)) and m > n["loaded"] + LOAD_SLACK]

    @property
    def lock(self) -> dict | None:
        return self.raw.get("lock")

    @property
    def instance_id(self) -> str | None:
        """The instance id cloud-init recorded on the host, when it looks like one."""
        found = self.raw.get("instance_id")
        return found if isinstance(found, str) and INSTANCE_ID.fullmatch(found) else None

    @property
    def os(self) -> str:
        o = self.raw.get("os") or {}
        return f"{o.get('id')} {o.get('version')}"


def gather(conn, paths: Paths, spec: Spec, *, lock_holder: dict | None = None) -> Facts:
    """Read the host; with `lock_holder`, also take the deploy lock in the same round trip."""
    params = {"packages": list(spec.packages), "user": spec.user, "app_user": spec.app_user,
              "nodes": list(spec.nodes),
              "files": list(spec.files), "texts": list(spec.texts), "units": list(spec.units),
              "bundle": spec.bundle,
              "nginx": {"paths": list(spec.nginx), "pid_file": NGINX_PID_FILE}
              if spec.nginx else None,
              "releases": paths.releases, "current": paths.current,
              "lock": {"path": paths.lock, "holder": lock_holder} if lock_holder else None}
    r = remote.sh(conn, "sudo -n python3 -", step="facts",
                  stdin=onhost.python_call(("manifest.py", "facts.py"), "main", params))
    raw = json.loads(r.stdout)
    try:
        return Facts(checked(raw, paths))
    except RailsfabError as exc:
        exc.lock = raw.get("lock")  # taken in the same trip: the caller releases it
        raise


def ledger(meta: Any) -> dict[str, str]:
    """A ledger read from a host, keeping only what railsfab writes, as it writes it."""
    if not isinstance(meta, dict):
        return {}
    return {k: v for k, v in meta.items()
            if k in LEDGER and isinstance(v, str) and LEDGER[k].fullmatch(v)}


def checked(raw: dict, paths: Paths) -> dict:
    """The facts' release names and ledgers as railsfab makes them: a folder under
    releases/ (or a `current`) of another name is refused, naming it."""
    releases = raw.get("releases") if isinstance(raw.get("releases"), dict) else {}
    current = raw.get("current")
    names = [*releases, *([current] if current is not None else [])]
    bad = next((n for n in names if not isinstance(n, str) or not RELEASE_ID.fullmatch(n)), None)
    if bad is not None:
        what = printable(repr(bad), 80)
        where = f"`current` points to {what}" if bad == current and bad not in releases \
            else f"{paths.releases} holds {what}"
        raise RailsfabError(
            f"{where}: not a release railsfab made (its names are 14 digits, the UTC time)",
            step="facts", fix=f"look at what it is and who made it, move it out of "
            f"{paths.releases} (and `current` back onto a release), then run the command again")
    raw["releases"] = {n: ledger(m) for n, m in releases.items()}
    return raw
