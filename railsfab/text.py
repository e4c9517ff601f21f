"""Text read back from a host is the app's input: it reaches the operator's terminal only
through `printable` (one line) or `safe` (lines), so an escape sequence in a log line
cannot move the cursor, rewrite a line or write to the clipboard."""

from __future__ import annotations


def printable(text: str, limit: int = 300) -> str:
    """`text` with every control character shown escaped (ESC as \\x1b), at most `limit`
    characters."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)[:limit]


def safe(text: str) -> str:
    """`text` with every control character but newline and tab shown escaped: what the
    terminal is given (Reporter's lines, `fab logs`, `fab rails` output, tables)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in "\n\t" else repr(c)[1:-1] for c in text)
