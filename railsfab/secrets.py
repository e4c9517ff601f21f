"""Local secrets (SECRET_KEY_BASE, DATABASE_PASSWORD, ...): a git-ignored KEY=value file.

Values are never printed and never put on a command line; files are written 0600.
"""

from __future__ import annotations

import os
import secrets as _random
import tempfile
from pathlib import Path

from railsfab.errors import ConfigError


def check_private(path: Path) -> None:
    """A secrets file readable by others, or someone else's, is refused (one line, the fix)."""
    st = path.stat()
    if st.st_mode & 0o077 or st.st_uid != os.getuid():
        raise ConfigError(
            f"{path}: secrets file is mode {st.st_mode & 0o777:04o}, owner uid {st.st_uid}: it "
            "must be yours and private (0600)",
            fix=f"chmod 600 {path}" + ("" if st.st_uid == os.getuid()
                                        else f" && chown {os.getuid()} {path}"))


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        check_private(path)
        text = path.read_text()
    except FileNotFoundError:
        return values
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        if not sep or not key.strip().isidentifier():
            raise ConfigError(f"{path}:{n}: expected KEY=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def write_env_file(path: Path, values: dict[str, str]) -> None:
    """Write atomically with mode 0600 from the start (never briefly world-readable), through
    a temp file made fresh (O_EXCL: a leftover or planted one is never reused)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # 0600, O_EXCL
    try:
        with os.fdopen(fd, "w") as f:
            f.write("# written by railsfab; keep out of git\n")
            for k, v in values.items():
                f.write(f"{k}={v}\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def ensure_generated(path: Path, keys: dict[str, int]) -> bool:
    """Make sure each key exists, generating `nbytes` of random hex for missing ones."""
    values = read_env_file(path)
    missing = {k: n for k, n in keys.items() if not values.get(k)}
    if not missing:
        return False
    for k, n in missing.items():
        values[k] = _random.token_hex(n)
    write_env_file(path, values)
    return True


# Keys the local environment may supply (it wins over the file), e.g. from a CI secret store.
ENV_KEYS = ("SECRET_KEY_BASE", "RAILS_MASTER_KEY", "DATABASE_PASSWORD", "DATABASE_URL")


def app_secrets(file: Path | None) -> dict[str, str]:
    """Secrets for the app: the git-ignored file, overridden by the local environment."""
    values = read_env_file(file) if file else {}
    for key in ENV_KEYS:
        if os.environ.get(key):
            values[key] = os.environ[key]
    if not (values.get("SECRET_KEY_BASE") or values.get("RAILS_MASTER_KEY")):
        where = f" or in {file}" if file else " (or set app.secrets_file in hosts.yaml)"
        raise ConfigError(
            f"no SECRET_KEY_BASE or RAILS_MASTER_KEY: set one in the environment{where}",
            fix="e.g. `echo SECRET_KEY_BASE=$(openssl rand -hex 64) >> <secrets file>`",
        )
    return values


def env_file_text(values: dict[str, str]) -> str:
    """KEY='value' lines that systemd's EnvironmentFile= and sh's `.` read the same way."""
    lines = ["# written by railsfab: secrets and settings for the app (root-only, 0600)"]
    for k, v in values.items():
        if "'" in v or "\n" in v:
            raise ConfigError(f"{k}: values may not contain single quotes or newlines")
        lines.append(f"{k}='{v}'")
    return "\n".join(lines) + "\n"
