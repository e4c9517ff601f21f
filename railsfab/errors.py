"""The one error type tasks catch: what failed, where, what it left behind, and the fix."""

from __future__ import annotations


class RailsfabError(Exception):
    """A failure a user can act on. Printed as one block by the task boundary, no traceback."""

    exit_code = 1
    # The exit status of the host-side script that failed, when one did (a restart script's
    # status says whether the running server was left as it was).
    exited: int | None = None

    def __init__(
        self,
        message: str,
        *,
        fix: str | None = None,
        host: str | None = None,
        step: str | None = None,
        state: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.host = host
        self.step = step
        self.state = state


class ConfigError(RailsfabError):
    """hosts.yaml (or another local input) is wrong; found before any SSH."""

    exit_code = 2
