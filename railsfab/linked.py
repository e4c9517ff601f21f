"""app.linked_files, as Capistrano's linked_files: files kept in shared/ and linked into
every release (config/database.yml, config/master.key). railsfab uploads those that come from
a local file or a key of the secrets file; the others are the hosts' (put there by you), and a
deploy fails before the release when one is missing. They never ship in the release archive."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from railsfab.errors import ConfigError
from railsfab.inventory import Inventory

MAX_SIZE = 1 << 20
# root's, in shared/config (root's): the deploy user (Rails commands) and the app's user
# (a member of the deploy user's group) read it through that group; neither may change it.
MODE = "0640"


@dataclass(frozen=True)
class Linked:
    path: str  # in the release, e.g. config/database.yml
    shared: str  # where it is kept on the hosts
    data: bytes | None  # None: the hosts' own (nothing uploaded)
    origin: str  # said in the output: "from deploy/database.yml", "secret RAILS_MASTER_KEY"

    @property
    def digest(self) -> str:
        """What the host's copy must hash to (compared with the facts, never stored)."""
        return hashlib.sha256(self.data).hexdigest() if self.data is not None else ""

    def mark(self, key: bytes) -> str:
        """Its contents in a release's digests (which the ledger keeps on the hosts), keyed:
        a file with a password in it cannot be guessed from them."""
        return hmac.new(key, self.data, "sha256").hexdigest() if self.data is not None else ""


def resolve(inv: Inventory, secrets: dict[str, str], shared: str) -> tuple[Linked, ...]:
    """Each linked file with what is uploaded for it, read and checked before any SSH."""
    app, where = inv.stage.app, f"stages.{inv.stage_name}.app.linked_files"
    out = []
    for lf in app.linked_files:
        dest = f"{shared}/{lf.path}"
        if lf.secret:
            if lf.secret not in secrets:
                raise ConfigError(
                    f"{inv.path.name}: {where}: {lf.path} comes from secret {lf.secret}, "
                    "which the secrets file (and the environment) does not have",
                    fix=f"add {lf.secret}=... to {app.secrets_file or 'app.secrets_file'}")
            value = secrets[lf.secret]
            out.append(Linked(lf.path, dest, (value + "\n").encode(), f"secret {lf.secret}"))
        elif lf.from_:
            local = inv.resolve(lf.from_)
            if not local.is_file() or local.stat().st_size > MAX_SIZE:
                raise ConfigError(
                    f"{inv.path.name}: {where}: {lf.path} comes from {local}, which is "
                    + ("not a file" if not local.is_file() else "over 1 MiB"),
                    fix=f"point `from` of {lf.path} at the file to upload")
            out.append(Linked(lf.path, dest, local.read_bytes(), f"from {lf.from_}"))
        else:
            out.append(Linked(lf.path, dest, None, "kept on the hosts"))
    return tuple(out)

