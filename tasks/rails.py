"""fab rails / fab logs: a Rails command or console on the hosts, and their logs."""

from __future__ import annotations

import sys

from invoke import Exit

from tasks._boundary import ONLY_HELP, STAGE_HELP, command, load_stage

# What followed `--` on the command line, exactly as typed (quoting kept).
ARGS: list[str] = []


def claim_remainder() -> None:
    """Fabric would run what follows `--` as a shell command on `-H` hosts (and refuse
    without them); railsfab's tasks take it as their arguments: `fab rails -- db:seed`.
    fabfile.py calls this while Fabric loads it, before anything runs."""
    try:
        from fabric.main import program
    except ImportError:
        return
    core = getattr(program, "core", None)
    if core is None or not getattr(core, "remainder", ""):
        return
    argv = sys.argv
    ARGS[:] = argv[argv.index("--") + 1:] if "--" in argv else core.remainder.split()
    core.remainder = ""


@command(name="rails", help={
    "stage": STAGE_HELP,
    "only": "host name(s) to run on (default: the migrate host)",
    "all": "run on every web host",
    "console": "an interactive `rails console` on one host",
})
def rails(c, stage=None, only=None, all_=False, console=False):
    """Run a Rails command in `current` as the deploy user: fab rails -- db:seed."""
    from railsfab import console as consolelib

    inv = load_stage(stage)
    if console:
        code = consolelib.console(inv, only=only)
        if code:
            raise Exit(code=code)
        return
    consolelib.run_rails(inv, list(ARGS), only=only, all_hosts=all_)


@command(name="logs", help={
    "stage": STAGE_HELP,
    "only": ONLY_HELP,
    "lines": "how many of the last lines of each log (default 20)",
    "follow": "keep printing what the logs get, until Ctrl-C",
})
def logs(c, stage=None, only=None, lines=20, follow=False):
    """The app server's, Rails' and nginx's logs of every web host, each line with its host."""
    from railsfab import console as consolelib

    consolelib.logs(load_stage(stage), only=only, lines=lines, follow=follow)
