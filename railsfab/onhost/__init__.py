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


FUTURE = "from __future__ import annotations"


def python_call(names: str | tuple[str, ...], function: str, params: object) -> bytes:
    """The text of the file(s) `names`, in order, as one program, plus a call of `function`
    with `params` (JSON), for `python3 -`. (Their __future__ imports go first, once.)"""
    names = (names,) if isinstance(names, str) else names
    body = "".join("\n".join(line for line in load(n).rstrip("\n").splitlines()
                             if line.strip() != FUTURE) + "\n" for n in names)
    literal = json.dumps(json.dumps(params))
    return f"{FUTURE}\n{body}{function}(json.loads({literal}))\n".encode()
