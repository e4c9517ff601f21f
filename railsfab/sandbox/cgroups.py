"""A cgroup of its own for each sandbox host.

Without machined (--keep-unit --register=no), systemd-nspawn puts a container's cgroups under
the cgroup it was started in: started from the same one, every host's systemd shared
/payload/system.slice/<unit>. One host removing a unit's cgroup as another attached to it
failed that unit with 219/CGROUP (seen: systemd-tmpfiles-setup-dev.service, several hosts
booting together, one "degraded"). So each host's nspawn is started in a cgroup of its own,
railsfab/<name> below this process's cgroup, in the hierarchies systemd tracks units in
(the named v1 "systemd" one and the unified v2 one, whichever this machine mounts).
"""

from __future__ import annotations

import os
from pathlib import Path

PARENT = "railsfab"


def _mounts() -> dict[str, tuple[Path, str]]:
    """{'systemd' or 'unified': (mount point, its root in the hierarchy)}."""
    found: dict[str, tuple[Path, str]] = {}
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return found
    for ln in lines:
        pre, _, post = ln.partition(" - ")
        fields, (fstype, _source, opts) = pre.split(), post.split()[:3]
        if fstype == "cgroup2":
            found.setdefault("unified", (Path(fields[4]), fields[3]))
        elif fstype == "cgroup" and "name=systemd" in opts.split(","):
            found.setdefault("systemd", (Path(fields[4]), fields[3]))
    return found


def _own_paths() -> dict[str, str]:
    """This process's cgroup in each hierarchy: {'systemd': path, 'unified': path}."""
    paths = {}
    for ln in Path("/proc/self/cgroup").read_text().splitlines():
        num, controllers, path = ln.split(":", 2)
        if num == "0" and controllers == "":
            paths["unified"] = path
        elif "name=systemd" in controllers.split(","):
            paths["systemd"] = path
    return paths


def host_cgroups(name: str) -> list[Path]:
    """The host's cgroup folder in each hierarchy this machine has (none: empty)."""
    own = _own_paths()
    dirs = []
    for kind, (mount, root) in _mounts().items():
        if kind not in own:
            continue
        rel = os.path.relpath(own[kind], root) if own[kind].startswith(root) else "."
        dirs.append((mount / rel / PARENT / name).resolve())
    return dirs


def create(name: str) -> list[Path]:
    """Make the host's cgroups; the cgroup.procs files its nspawn writes itself into."""
    procs = []
    for d in host_cgroups(name):
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:  # not ours to make (a restricted container): share, as before
            continue
        procs.append(d / "cgroup.procs")
    return procs


def wrap(argv: list, procs: list[Path]) -> list:
    """`argv`, run by a shell that first moves itself into these cgroups, then execs it
    (same PID, so the PID file is nspawn's)."""
    if not procs:
        return argv
    script = ('n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 1; shift; '
              'n=$((n - 1)); done; exec "$@"')
    return ["sh", "-c", script, "sh", str(len(procs)), *map(str, procs), *argv]


def remove(name: str) -> None:
    """Remove the host's cgroups once its processes are gone (deepest first); a cgroup still
    in use stays."""
    for d in host_cgroups(name):
        if not d.is_dir():
            continue
        for sub in sorted((p for p in d.rglob("*") if p.is_dir()),
                          key=lambda p: len(p.parts), reverse=True) + [d]:
            try:
                sub.rmdir()
            except OSError:
                pass
