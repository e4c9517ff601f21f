"""Programs that run on the hosts, kept as files so they are linted and tested like code.

Python probes use only the standard library (they run on a bare Debian/Ubuntu host) and do
nothing at import: the controller sends a file's text followed by one call of its `main`
with the parameters, to `python3 -` on the host's stdin. Shell scripts read their
parameters from the environment. `load(name)` returns a file's text.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files


@cache
def load(name: str) -> str:
    return (files(__package__) / name).read_text()


def python_call(name: str, function: str, params: object) -> bytes:
    """The text of `name` plus a call of `function` with `params` (JSON), for `python3 -`."""
    literal = json.dumps(json.dumps(params))
    text = load(name).rstrip("\n") + "\n"
    return f"{text}{function}(json.loads({literal}))\n".encode()
