"""The one place task failures become a message and an exit status."""

from __future__ import annotations

import functools
import sys

from invoke import Exit, task

from railsfab import inventory
from railsfab.errors import RailsfabError
from railsfab.report import Reporter


def command(*, name: str, help: dict[str, str] | None = None):
    """Like @task, plus: RailsfabError -> one failure block and its exit status, no traceback."""

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(c, *args, **kwargs):
            try:
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

        return task(help=help or {})(wrapper)

    return deco


STAGE_HELP = "stage from hosts.yaml (default: $RAILSFAB_STAGE, else the file's default_stage)"


def load_stage(stage: str | None) -> inventory.Inventory:
    return inventory.load(stage=stage)
