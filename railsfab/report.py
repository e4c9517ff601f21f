"""Progress a person can follow: one line per host and step (ok/changed/failed, time),
a recap per host, and the one failure block.

In a terminal, each running step also has a live line (spinner, host, step, elapsed time
and the last thing its commands printed: apt's downloads, precompile, "waiting for the new
master..."), replaced by the usual line when the step ends. Without a terminal (CI, a pipe)
only the usual lines are printed."""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from railsfab.errors import RailsfabError
from railsfab.text import printable, safe

STYLES = {"ok": "green", "changed": "yellow", "failed": "bold red"}


@dataclass
class Result:
    host: str
    step: str
    status: str  # ok | changed | failed
    detail: str
    seconds: float


@dataclass
class Step:
    """Handle given to the body of `Reporter.step`: say whether something changed, and
    (`progress`) what is happening meanwhile."""

    changed: bool = False
    detail: str = ""
    _done: bool = field(default=False, repr=False)
    _progress: object = field(default=None, repr=False)

    def progress(self, text: str) -> None:
        if self._progress is not None:
            self._progress(text)

    def ok(self, detail: str = "") -> None:
        self.changed, self.detail, self._done = False, detail, True

    def change(self, detail: str = "") -> None:
        self.changed, self.detail, self._done = True, detail, True

    def set(self, changed: bool, detail: str = "") -> None:
        self.changed, self.detail, self._done = changed, detail, True


def _console() -> Console:
    c = Console(highlight=False)
    if not c.is_terminal:  # logs and CI: don't wrap at rich's 80-column default
        c.width = 200
    return c


@dataclass
class _Running:
    host: str
    step: str
    started: float
    spinner: Spinner
    activity: str = ""


class _LiveLines:
    """What the live area shows: one line per running step, drawn on each refresh."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter

    def __rich__(self) -> Table:
        grid = Table.grid(padding=(0, 1))
        now = time.monotonic()
        # No lock here: rich draws this while holding its own locks, and a step beginning in
        # another thread may wait for those (the dict is copied in one step under the GIL).
        running = list(self.reporter._running.values())
        for r in running:  # laid out like the lines the steps end with
            grid.add_row(r.spinner, Text(f"{r.host:<8}"), Text("running ", style="cyan"),
                         Text(f"{r.step:<16}"), Text(f"{now - r.started:5.1f}s", style="dim"),
                         Text(r.activity, style="dim", no_wrap=True, overflow="ellipsis"))
        return grid


class Reporter:
    def __init__(self, console: Console | None = None, quiet: bool = False,
                 live: bool | None = None) -> None:
        self.console = console or _console()
        self.quiet = quiet
        self.live = (self.console.is_terminal if live is None else live) and not quiet
        self.results: list[Result] = []
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._running: dict[int, _Running] = {}
        self._live: Live | None = None
        self._live_lock = threading.Lock()

    def _begin(self, host: str, name: str, handle: Step) -> int:
        key = id(handle)
        if not self.live:
            return key
        with self._lock:
            self._running[key] = _Running(host, name, time.monotonic(), Spinner("dots"))
        self._start_live()

        def progress(text: str) -> None:
            running = self._running.get(key)
            if running is not None:
                running.activity = printable(text, 200)

        handle._progress = progress
        return key

    def _start_live(self) -> None:
        """One live area for the whole command, started with its first step; between steps
        it is empty. Started and stopped under its own lock, never under `_lock`."""
        with self._live_lock:
            if self._live is None:
                self._live = Live(_LiveLines(self), console=self.console, transient=True,
                                  refresh_per_second=8, redirect_stdout=False,
                                  redirect_stderr=False)
                self._live.start()
                atexit.register(self.close)

    def _end(self, key: int) -> None:
        with self._lock:
            self._running.pop(key, None)

    def close(self) -> None:
        """Remove the live area (the recap and the failure block call this; so does exit)."""
        with self._live_lock:
            if self._live is not None:
                self._live.stop()
                self._live = None

    def _print(self, text: str) -> None:
        """Every line the reporter prints: what came from a host is in it, shown safe."""
        self.console.print(safe(text))

    @contextmanager
    def step(self, host: str, name: str) -> Iterator[Step]:
        handle = Step()
        t0 = time.monotonic()
        key = self._begin(host, name, handle)
        try:
            yield handle
        except RailsfabError as exc:
            exc.host = exc.host or (host if host != "local" else None)
            exc.step = exc.step or name
            self._record(Result(host, name, "failed", exc.message, time.monotonic() - t0))
            raise
        except Exception as exc:
            self._record(Result(host, name, "failed", str(exc), time.monotonic() - t0))
            raise
        finally:
            self._end(key)
        status = "changed" if handle.changed else "ok"
        self._record(Result(host, name, status, handle.detail, time.monotonic() - t0))

    def _record(self, r: Result) -> None:
        with self._lock:
            self.results.append(r)
        if self.quiet:
            return
        detail = r.detail if r.status != "failed" else (r.detail.splitlines() or [""])[0]
        self._print(
            f"  {escape(r.host):<8} [{STYLES[r.status]}]{r.status:<8}[/] "
            f"{escape(r.step):<16} [dim]{r.seconds:5.1f}s[/]  {escape(detail)}",
        )

    def info(self, text: str) -> None:
        if not self.quiet:
            self._print(text)

    @property
    def changed_count(self) -> int:
        return sum(r.status == "changed" for r in self.results)

    def recap(self, title: str) -> None:
        self.close()
        if self.quiet:
            return
        hosts: dict[str, dict[str, int]] = {}
        for r in self.results:
            counts = hosts.setdefault(r.host, {"ok": 0, "changed": 0, "failed": 0})
            counts[r.status] += 1
        total = time.monotonic() - self.started
        self._print(f"[bold]{escape(title)}[/] recap ({total:.1f}s)")
        for host, c in hosts.items():
            self._print(
                f"  {escape(host):<8} [green]ok={c['ok']}[/] [yellow]changed={c['changed']}[/] "
                f"[{'bold red' if c['failed'] else 'dim'}]failed={c['failed']}[/]"
            )

    def failure(self, exc: RailsfabError, command: str) -> None:
        self.close()
        where = f" on {exc.host}" if exc.host else ""
        step = f", step {exc.step}" if exc.step else ""
        lines = [f"[bold red]✗ {escape(command)} failed{escape(where)}{escape(step)}[/]"]
        lines += [f"  {escape(line)}" for line in exc.message.splitlines()]
        if exc.state:
            lines.append(f"  state: {escape(exc.state)}")
        if exc.fix:
            lines.append(f"  fix:   {escape(exc.fix)}")
        self._print("\n".join(lines))
