"""Text read back from a host is the app's input: it reaches the operator's terminal only
through `printable` (one line) or `safe` (lines), so an escape sequence in a log line
cannot move the cursor, rewrite a line or write to the clipboard."""

from __future__ import annotations

from collections.abc import Iterable


def _shown(text: str, keep: str = "") -> str:
    """`text` with every control character not in `keep` shown escaped (ESC as \\x1b)."""
    return "".join(c if c.isprintable() or c in keep else repr(c)[1:-1] for c in text)


def printable(text: str, limit: int = 300) -> str:
    """One line: every control character shown escaped, at most `limit` characters."""
    return _shown(text)[:limit]


def printable_lines(lines: Iterable[str]) -> str:
    """Lines read from a host, for a message: each one `printable`."""
    return "\n".join(printable(line) for line in lines)


def safe(text: str) -> str:
    """`text` with every control character but newline and tab shown escaped: what the
    terminal is given (Reporter's lines, `fab logs`, `fab rails` output, tables)."""
    return text if text.isprintable() else _shown(text, "\n\t")
