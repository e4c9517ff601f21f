"""The one place task failures become a message and an exit status, and where the flags of
every task follow the same conventions."""

from __future__ import annotations

import functools
import sys

from invoke import Exit, Task, task

from railsfab import inventory
from railsfab.errors import ConfigError, RailsfabError
from railsfab.report import Reporter

# One meaning per short flag, in every task. Invoke would otherwise give each task the first
# free letter of each flag: `-h` became `--hard` in restart-app (help everywhere else), `-o`
# meant `--only` in one task and `--out` in another. Destructive or rare flags stay long.
SHORT_FLAGS = {"stage": "s", "only": "o", "dry_run": "n", "json": "j", "follow": "f"}


class RailsfabTask(Task):
    def arg_opts(self, name, default, taken_names):
        opts = super().arg_opts(name, default, taken_names)
        short = SHORT_FLAGS.get(name)
        if short and short not in taken_names:
            opts["names"].append(short)
        return opts


def command(*, name: str, help: dict[str, str] | None = None):
    """Like @task, plus: RailsfabError -> one failure block and its exit status, no traceback."""

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(c, *args, **kwargs):
            try:
                _refuse_fabric_hosts(c)
                return fn(c, *args, **kwargs)
            except RailsfabError as exc:
                Reporter().failure(exc, command=f"fab {name}")
                raise Exit(code=exc.exit_code) from None
            except KeyboardInterrupt:
                print(f"\nfab {name}: interrupted", file=sys.stderr)
                raise Exit(code=130) from None
            except Exception as exc:
                # AWS errors (no credentials, endpoint unreachable, access denied) are the
                # user's to fix, not tracebacks; botocore is not imported to recognise them.
                if not type(exc).__module__.startswith("botocore"):
                    raise
                err = RailsfabError(
                    f"AWS call failed: {exc}", step="aws",
                    fix="check the credentials (instance role, AWS_PROFILE or AWS_* "
                        "variables) and aws.region / aws.endpoint_url of the stage")
                Reporter().failure(err, command=f"fab {name}")
                raise Exit(code=err.exit_code) from None

        return task(klass=RailsfabTask, auto_shortflags=False, help=help or {})(wrapper)

    return deco


def _refuse_fabric_hosts(c) -> None:
    """`fab -H web1 deploy` would run the whole task once per -H host (Fabric hands each
    call a Connection): railsfab's hosts come from the stage in hosts.yaml."""
    host = getattr(c, "host", None)
    if host:
        raise ConfigError(
            "fab -H/--hosts is not how railsfab picks hosts: they come from the stage in "
            "hosts.yaml", fix=f"use --only {host} (a host name from hosts.yaml)")


STAGE_HELP = "stage from hosts.yaml (default: $RAILSFAB_STAGE, else the file's default_stage)"
ONLY_HELP = "comma-separated host names (default: every web host)"


def load_stage(stage: str | None, *, hosts: bool = True,
               stderr: bool = False) -> inventory.Inventory:
    """The stage from hosts.yaml; with `hosts`, its web hosts read from AWS when the stage
    says `hosts_from` (one progress line, on stderr when stdout is for data)."""
    inv = inventory.load(stage=stage)
    if hosts and inv.stage.hosts_from is not None:
        from rich.console import Console

        from railsfab import fleet

        console = Console(stderr=True, highlight=False) if stderr else Reporter().console
        fleet.resolve(inv, lambda text: console.print(text, markup=False, soft_wrap=True))
    return inv
