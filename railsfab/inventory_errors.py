"""hosts.yaml's mistakes as one line each: the path to the bad key, what was expected, and
the nearest known key for a typo."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel

from railsfab.errors import ConfigError

_TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def describe(path: Path, err: dict, data: Any, root: type[BaseModel]) -> str:
    """One line for pydantic's error `err` in the file `path` (data: the file's contents)."""
    loc = [str(x) for x in err["loc"]]
    # pydantic reports "stages.<name>" under dict keys; keep the path as the user wrote it.
    where = ".".join(loc) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        known = _known_keys(loc[:-1], data, root)
        return f"{path}: {where}: unknown key{suggest(loc[-1], known)}"
    if kind == "missing":
        return f"{path}: {where}: required key is missing"
    if kind in _TYPE_WORDS:
        got = err.get("input")
        return f"{path}: {where}: expected {_TYPE_WORDS[kind]}, got {_show(got)}"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{path}: {where}: expected one of {expected}, got {_show(err.get('input'))}"
    if kind == "string_pattern_mismatch":
        from railsfab.inventory_shapes import PATTERNS

        says = PATTERNS.get(err.get("ctx", {}).get("pattern", ""), "of the expected form")
        return f"{path}: {where}: {_show(err.get('input'))} is not {says}"
    msg = err["msg"]
    msg = re.sub(r"^(Value error|Assertion failed), ", "", msg)
    return f"{path}: {where}: {msg}"


def _show(v: Any) -> str:
    if isinstance(v, (dict, list)):
        return "a mapping" if isinstance(v, dict) else "a list"
    return repr(v)


def suggest(word: str, known: list[str]) -> str:
    """' (did you mean 'x'?)' for the nearest known word, or ''."""
    near = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return f" (did you mean '{near[0]}'?)" if near else ""


def _known_keys(loc: list[str], data: Any, root: type[BaseModel]) -> list[str]:
    """Field names of the model that sits at `loc` in the file, for "did you mean"."""
    t: Any = root
    for part in loc:
        if get_origin(t) in (list, dict):
            t = get_args(t)[-1]  # a list index or a stage name: step into the item type
            continue
        if not (isinstance(t, type) and issubclass(t, BaseModel)) or part not in t.model_fields:
            return []
        t = _unwrap_optional(t.model_fields[part].annotation)
    if isinstance(t, type) and issubclass(t, BaseModel):
        return list(t.model_fields)
    return []


def _unwrap_optional(t: Any) -> Any:
    if get_origin(t) in (Union, UnionType):
        args = [a for a in get_args(t) if a is not type(None)]
        return args[0] if len(args) == 1 else t
    return t


def read_yaml(p: Path) -> Any:
    """hosts.yaml's contents; a file that cannot be read or parsed is one line (line:col)."""
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"{p}: file not found",
            fix="run fab from the project folder, or point RAILSFAB_HOSTS at your hosts.yaml",
        ) from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and start:
            problem += f" ({context} started at line {start.line + 1})"
        raise ConfigError(f"{p}{where}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping with 'default_stage' and 'stages' at the top")
    return data
