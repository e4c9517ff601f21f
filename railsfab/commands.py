"""Pure command builders: argv in, one quoted shell string out. No I/O here.

A Cmd runs as root (through `sudo sh -c`) unless `user` is set, in which case root
loads the env file (root-only, 0600) and drops to that user with runuser: secrets reach
the process environment without ever appearing in a command line.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

from railsfab.paths import Paths

SECRET_NAME = re.compile(r"(SECRET|PASSWORD|MASTER_KEY|TOKEN|ACCESS_KEY|CREDENTIAL)", re.I)
MASK = "***"


@dataclass(frozen=True)
class Cmd:
    argv: tuple[str, ...]
    user: str | None = None
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    env_file: str | None = None
    umask: str | None = None

    def script(self, *, masked: bool = False) -> str:
        parts: list[str] = []
        if self.umask:
            parts.append(f"umask {self.umask}")
        if self.cwd:
            parts.append(f"cd {shlex.quote(self.cwd)}")
        if self.env_file:
            parts.append(f"set -a && . {shlex.quote(self.env_file)} && set +a")
        run = []
        if self.user:
            run += ["runuser", "-u", self.user, "--"]
        if self.env:
            run.append("env")
            for k, v in self.env.items():
                shown = MASK if masked and SECRET_NAME.search(k) else v
                run.append(f"{k}={shown}")
        run += self.argv
        parts.append("exec " + shlex.join(run) if parts else shlex.join(run))
        return " && ".join(parts)

    def __str__(self) -> str:
        return self.script(masked=True)


def rails(paths: Paths, release_dir: str, user: str, rails_env: str, *task: str,
          extra_env: Mapping[str, str] | None = None) -> Cmd:
    """bin/rails TASK in a release, as the deploy user, RAILS_ENV always explicit, with the
    release's Gemfile.railsfab. Umask 0007: what it writes in the shared folders (the log,
    caches) stays writable by the app's user, through their common group; the release itself
    is read-only to the app (its unit's ReadWritePaths) and public/ is closed after."""
    return Cmd(argv=("bin/rails", *task), user=user, cwd=release_dir,
               env={"RAILS_ENV": rails_env, "RACK_ENV": rails_env,
                    **paths.bundler_env(release_dir), **(extra_env or {})},
               env_file=paths.env_file, umask="0007")


def bundle_install(paths: Paths, release_dir: str, user: str) -> Cmd:
    """Debian's gems: resolve the Gemfile (without app.bundle_without's groups) against the
    gems the OS packages installed, no network. Bundler's: install the app's Gemfile.lock as
    it is (deployment mode, into shared/bundle, from rubygems.org or the mirror)."""
    if paths.gems == "bundler":
        return Cmd(argv=("bundle", "install"), user=user, cwd=release_dir,
                   env=paths.bundler_env(release_dir), umask="0027")
    # --no-cache: an app's vendor/cache is read, never written (Debian keeps no .gem files)
    return Cmd(argv=("bundle", "install", "--local", "--no-cache"), user=user, cwd=release_dir,
               env={"BUNDLE_FROZEN": "false", **paths.bundler_env(release_dir)}, umask="0027")


def apt_install(packages: list[str]) -> Cmd:
    return Cmd(argv=("apt-get", "install", "-y", "-q", "--no-install-recommends", *packages),
               env={"DEBIAN_FRONTEND": "noninteractive"})


def switch_current(paths: Paths, release_id: str, *, owner: str | None = None) -> str:
    """Atomic: a new symlink under a temporary name, renamed over `current` (rename(2));
    made by `owner` (the deploy user, whose folder it is: root never acts on a name there
    that the deploy user could have put a link or a folder at) when given."""
    tmp = f"{paths.current}.new"
    script = (f"ln -sfn {shlex.quote(paths.release(release_id))} {shlex.quote(tmp)} && "
              f"mv -T {shlex.quote(tmp)} {shlex.quote(paths.current)}")
    if owner is None:
        return script
    return f"runuser -u {shlex.quote(owner)} -- sh -c {shlex.quote(script)}"


def apt_install_script(packages: list[str], *, update: bool) -> str:
    """Install packages, waiting while another apt holds the lock (cloud-init and
    unattended-upgrades on a new EC2 host, or another host sharing the sandbox's .deb
    cache). Stale package lists point at versions the mirror no longer has: on a failed
    install, update the lists and try once more. apt's output streams as it runs (live
    progress); a failure ends with its last lines on stderr."""
    install = str(apt_install(packages))
    first = f"apt-get update -q && {install}" if update else install
    attempt = f"{first} || (apt-get update -q && {install})"
    return (
        "t=$(mktemp -d) && trap 'rm -rf \"$t\"' EXIT && i=0 && while :; do "
        f"{{ ( {attempt} ); echo $? > \"$t/rc\"; }} 2>&1 | tee \"$t/out\"; "
        "[ \"$(cat \"$t/rc\")\" = 0 ] && exit 0; "
        "if grep -q -e 'Could not get lock' -e 'Unable to lock' \"$t/out\" "
        "&& [ $i -lt 600 ]; then i=$((i + 1)); sleep 1; continue; fi; "
        "if [ $i -ge 600 ]; then echo 'apt: the package lock was still held after 10 minutes' "
        ">&2; fi; tail -n 20 \"$t/out\" >&2; exit 1; done"
    )


def nginx_reload(verb: str = "reload") -> str:
    """`systemctl VERB nginx`, returning only once nginx's workers from before no longer
    take connections (each gone or "shutting down"; bounded, 10 s). `systemctl reload`
    returns as soon as the master is signalled: a request sent at once could still be
    accepted by an old worker, with the old config (and a verification pass on the old
    upstream)."""
    return ("{ old=$(pgrep -f '^nginx: worker process$' || true); "
            f"systemctl {verb} nginx && for _ in $(seq 200); do busy=; for p in $old; do "
            "[ \"$(ps -o args= -p \"$p\" 2>/dev/null)\" = 'nginx: worker process' ] && busy=1; "
            "done; [ -z \"$busy\" ] && break; sleep 0.05; done; }")
