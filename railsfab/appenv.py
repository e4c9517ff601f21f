"""The app's environment, as Rails reads it: what the env file gives (RAILS_ENV, the
database as DATABASE_URL and DATABASE_*, S3, app.env, the secrets), the names the app's own
config/storage.yml reads for its S3 service (mapped onto the stage's bucket, region and
endpoint), and the env preflight: every name the app's config reads without a default that
nothing will supply, named with where it is read, before anything is changed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from railsfab.errors import ConfigError
from railsfab.inventory import Database, Inventory

# Set by the app server's unit (templates/*.service.j2) or always there in a process.
UNIT_NAMES = frozenset({"RAILS_ENV", "RACK_ENV", "BUNDLE_GEMFILE", "BUNDLE_APP_CONFIG", "GEM_HOME",
                        "RAILS_MAX_THREADS", "RAILS_SERVE_STATIC_FILES", "PATH", "LANG",
                        "INVOCATION_ID", "JOURNAL_STREAM"})
NAME = r"""["']([A-Za-z_][A-Za-z0-9_]*)["']"""
FETCH = re.compile(r"ENV\.fetch\(\s*" + NAME + r"\s*(\)\s*(\{|do\b)?|,)")
INDEX = re.compile(r"ENV\[\s*" + NAME + r"\s*\]")
YAML_VALUE = re.compile(r"^\s*([\w-]+):\s*<%=\s*ENV\[\s*" + NAME + r"\s*\]\s*%>\s*$")
TOP_KEY = re.compile(r"^([A-Za-z_][\w-]*):(?:\s*&([\w-]+))?\s*(#.*)?$")
# storage.yml keys of an S3 service and the stage's value each takes
S3_KEYS = ("bucket", "region", "endpoint", "access_key_id", "secret_access_key")


@dataclass(frozen=True)
class EnvUse:
    name: str
    where: str  # file:line
    required: bool  # ENV.fetch without a default: the app raises at boot without it


def database_url(db: Database, password: str) -> str:
    """Rails' own way to be told its database: merged over config/database.yml's entry."""
    scheme = {"mysql2": "mysql2", "postgresql": "postgresql"}[db.adapter]
    auth = quote(db.user, safe="") + (f":{quote(password, safe='')}" if password else "")
    return f"{scheme}://{auth}@{db.host}:{db.port}/{db.name}"


def sections(text: str) -> dict[str, tuple[int, list[str]]]:
    """A YAML file's top-level keys: (first line number, lines) each, ERB left as it is."""
    out: dict[str, tuple[int, list[str]]] = {}
    name = None
    for n, line in enumerate(text.splitlines(), 1):
        top = TOP_KEY.match(line)
        if top:
            name = top.group(1)
            out[name] = (n, [line])
        elif name and (not line.strip() or line[:1] in " \t#" or line.startswith("<%")):
            out[name][1].append(line)
        elif line.strip():
            name = None
    return out


def s3_service(storage_yml: str | None) -> str | None:
    """The name of the first S3 service in an app's config/storage.yml (ERB and all)."""
    for name, (_, lines) in sections(storage_yml or "").items():
        if any(re.match(r"""^\s+service:\s*["']?S3["']?\s*(#.*)?$""", x) for x in lines):
            return name
    return None


def storage_names(storage_yml: str, service: str) -> dict[str, str]:
    """{storage.yml key: the env name it reads} for the S3 service's bucket, region, ..."""
    _, lines = sections(storage_yml).get(service, (0, []))
    names = {}
    for line in lines:
        m = re.match(r"^\s+(\w+):\s*<%=\s*ENV(?:\[\s*|\.fetch\(\s*)" + NAME, line)
        if m and m.group(1) in S3_KEYS:
            names[m.group(1)] = m.group(2)
    return names


def app_env(inv: Inventory, secrets: dict[str, str], service: str = "amazon",
            storage: dict[str, str] | None = None) -> dict[str, str]:
    """The app's environment: RAILS_ENV explicit, the database, S3, app.env, the secrets.
    `storage`: the env names the app's own storage.yml reads (key -> name)."""
    app, a = inv.stage.app, inv.stage.aws
    env = {"RAILS_ENV": app.rails_env, "RACK_ENV": app.rails_env}
    if app.database:
        db = app.database
        env.update(DATABASE_HOST=db.host, DATABASE_PORT=str(db.port),
                   DATABASE_NAME=db.name, DATABASE_USERNAME=db.user,
                   DATABASE_URL=database_url(db, secrets.get("DATABASE_PASSWORD", "")))
    if a.bucket:
        # ActiveStorage on S3. On EC2 the SDK takes credentials from the instance role:
        # no keys on disk. The sandbox's endpoint takes dummy keys, via this 0600 file.
        s3 = {"bucket": a.bucket, "region": a.region, "endpoint": a.endpoint_url}
        if inv.stage.sandbox:
            s3.update(access_key_id="testing", secret_access_key="testing")
        env.update(ACTIVE_STORAGE_SERVICE=service, S3_BUCKET=a.bucket, AWS_REGION=a.region)
        if a.endpoint_url:
            env["AWS_ENDPOINT_URL"] = a.endpoint_url
        if inv.stage.sandbox:
            env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
        env.update({name: s3[key] for key, name in (storage or {}).items() if s3.get(key)})
    if inv.stage.sandbox:  # the sandbox's mail sink (fab sandbox.mail): nothing is sent
        env.update(SMTP_ADDRESS=inv.stage.sandbox.gateway,
                   SMTP_PORT=str(inv.stage.sandbox.smtp_port))
    taken = sorted(set(app.env) & set(env))
    if taken:
        raise ConfigError(
            f"{inv.path.name}: stages.{inv.stage_name}.app.env sets {', '.join(taken)}, which "
            "railsfab sets from the stage (rails_env, database, aws)",
            fix=f"remove {', '.join(taken)} from app.env: change the setting it comes from")
    env.update(app.env)
    env.update(secrets)
    return env


def delivery(source, rails_env: str) -> str:
    """How the app serves its uploads, as its own config says (Rails' default: redirect)."""
    texts = [source.text("config/application.rb") or "",
             source.text(f"config/environments/{rails_env}.rb") or ""]
    proxy = any(re.search(r"^\s*config\.active_storage\.resolve_model_to_route\s*=\s*"
                          r":rails_storage_proxy", t, re.M) for t in texts)
    return ("uploads served through the app (its config: resolve_model_to_route = "
            ":rails_storage_proxy)" if proxy else "uploads served by redirects to presigned S3 "
            "URLs (Rails' default; a bucket policy limited to the VPC endpoint refuses them)")


def mapped_note(storage: dict[str, str]) -> str:
    """What the deploy says of the names it mapped for the app's storage.yml."""
    own = {k: v for k, v in storage.items()
           if v not in ("S3_BUCKET", "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                        "AWS_SECRET_ACCESS_KEY")}
    if not own:
        return ""
    return "; it reads " + ", ".join(f"{k} from {v}" for k, v in own.items()) + \
        ", which railsfab sets to the stage's"


def _scanned(files: dict[str, str], rails_env: str, skip_yml: set[str],
             used: dict[str, str]) -> list[tuple[str, int, str]]:
    """(file, line number, line) of the config the app reads in `rails_env`: Ruby in
    config/ (its own environment file only; not the app server's or Capistrano's), and of
    YAML files the section of `rails_env` with what it merges from (or all of a file without
    environment sections); `used`: {file: the section that file is read from}."""
    out = []
    other_envs = re.compile(r"^config/environments/(?!" + re.escape(rails_env) + r"\.rb$)")
    for rel, text in sorted(files.items()):
        lines = list(enumerate(text.splitlines(), 1))
        if rel.endswith(".rb"):
            if other_envs.match(rel) or rel in ("config/puma.rb", "config/unicorn.rb") \
                    or rel == "config/deploy.rb" or rel.startswith("config/deploy/"):
                continue
            out += [(rel, n, x) for n, x in lines]
        elif rel.endswith((".yml", ".yaml")) and rel not in skip_yml:
            secs = sections(text)
            want = used.get(rel, rails_env)
            if want not in secs:
                if rel in used or any(e in secs for e in (rails_env, "production",
                                                          "development", "test")):
                    continue
                out += [(rel, n, x) for n, x in lines]
                continue
            start, body = secs[want]
            anchors = set(re.findall(r"<<:\s*\*([\w-]+)", "\n".join(body)))
            for name, (s, b) in secs.items():
                if name == want or TOP_KEY.match(b[0]).group(2) in anchors:
                    out += [(rel, s + i, x) for i, x in enumerate(b)]
    return out


def env_uses(files: dict[str, str], rails_env: str, *, skip_yml: set[str] = frozenset(),
             used: dict[str, str] | None = None) -> list[EnvUse]:
    """The env names the app's config reads without a default: `ENV.fetch("X")` (required:
    a KeyError at boot) and `key: <%= ENV["X"] %>` in YAML (a nil setting). `ENV["X"]` in
    Ruby, `ENV.fetch("X", default)` and `ENV.fetch("X") { default }` have their default."""
    seen: dict[str, EnvUse] = {}
    for rel, n, line in _scanned(files, rails_env, set(skip_yml), used or {}):
        if line.lstrip().startswith("#"):
            continue
        for m in FETCH.finditer(line):
            if m.group(2).startswith(")") and not m.group(3):
                seen.setdefault(m.group(1), EnvUse(m.group(1), f"{rel}:{n}", True))
        m = YAML_VALUE.match(line) if not rel.endswith(".rb") else None
        if m:
            seen.setdefault(m.group(2), EnvUse(m.group(2), f"{rel}:{n}", False))
    return sorted(seen.values(), key=lambda u: (not u.required, u.name))


def preflight(uses: list[EnvUse], supplied: set[str], where: str) -> tuple[str | None, str]:
    """(error or None, warning or ""): the names read that nothing supplies. `where`: the
    stage's hosts.yaml path for the fix."""
    missing = [u for u in uses if u.name not in supplied and u.name not in UNIT_NAMES]
    required = [u for u in missing if u.required]
    said = "; ".join(f"{u.name} ({u.where})" for u in required)
    error = (f"the app's config reads {said} without a default, and the env file will not "
             f"set {'it' if len(required) == 1 else 'them'}: the app would not boot"
             ) if required else None
    soft = [u for u in missing if not u.required]
    warning = ("the app's config reads " + "; ".join(f"{u.name} ({u.where})" for u in soft)
               + f", which nothing sets (nil there): set it in {where}'s app.env, or the "
               "secrets file if it is secret") if soft else ""
    return error, warning
