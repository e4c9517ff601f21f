"""Runs a host's plan, or prints it: a dry run is this module's mode, not a branch in each
step. Every step is reported (ok / changed / failed, time); a step that runs shows live
progress in a terminal (what its commands print)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from railsfab import remote
from railsfab.errors import RailsfabError
from railsfab.facts import Facts
from railsfab.inventory import Host
from railsfab.ops.base import Change, Check, Diff, NoChange, Plan, Script
from railsfab.report import Reporter


@dataclass
class HostRun:
    """One host during one command: its connection, its facts, what was applied."""

    host: Host
    conn: Any = None
    facts: Facts | None = None
    locked: bool = False  # this run holds the host's deploy lock
    applied: list[str] = field(default_factory=list)  # steps whose changes ran, in order
    marks: dict[str, float] = field(default_factory=dict)  # when things happened
    restarted: bool = False  # the app server was started, restarted or handed over
    # a zero-downtime restart of it failed halfway (puma still reloading, its new workers
    # failing): only a full re-exec (hot) gets it out of that
    restart_failed: bool = False
    # drained from the target group in this run: its deregistration delay (s)
    drained: int | None = None
    error: RailsfabError | None = None
    progress: Callable[[str], None] | None = None  # the running step's live line

    @property
    def name(self) -> str:
        return self.host.name


def parallel(fn: Callable[[HostRun], None], runs: Iterable[HostRun],
             phase: str) -> dict[str, RailsfabError]:
    """`fn` on each run, one thread per host. Failures come back by host name (each a
    RailsfabError naming host and step) and are recorded on runs that had none yet; nothing
    is raised here."""
    todo = list(runs)
    errors: dict[str, RailsfabError] = {}
    if not todo:
        return errors
    with ThreadPoolExecutor(max_workers=len(todo)) as pool:
        for r, fut in [(r, pool.submit(fn, r)) for r in todo]:
            exc = fut.exception()
            if exc is None:
                continue
            if not isinstance(exc, RailsfabError):
                exc = RailsfabError(f"{type(exc).__name__}: {exc}", host=r.name, step=phase)
            exc.host = exc.host or r.name
            errors[r.name] = exc
            if r.error is None:
                r.error = exc
    return errors


class Executor:
    def __init__(self, rep: Reporter, *, dry: bool = False) -> None:
        self.rep = rep
        self.dry = dry

    def run(self, r: HostRun, plan: Plan, alongside: frozenset[str] = frozenset()) -> None:
        """Each step in order; raises (RailsfabError) at the first that fails. A change marked
        `background` (apt) runs on its own channel while the steps named in `alongside` that
        follow it run; the first other step waits for it."""
        changed = False
        pending: Future | None = None
        try:
            for planned in plan:
                if pending is not None and planned.step not in alongside:
                    waited, pending = pending, None
                    waited.result()  # raises the background step's failure
                o = planned.outcome
                if isinstance(o, Check) and (self.dry or not (changed or o.always)):
                    continue
                if isinstance(o, Change) and o.background and alongside and not self.dry:
                    pending, changed = self._background(r, planned.step, o), True
                    continue
                changed = self._step(r, planned.step, o) or changed
        finally:
            if pending is not None:
                pending.result()  # never leave it running; its failure is the earlier one

    def _step(self, r: HostRun, step: str, o) -> bool:
        """One step, reported; True when it changed something."""
        diff, changed = None, False
        with self.rep.step(r.name, step) as s:
            r.progress = s.progress
            try:
                if isinstance(o, Check):
                    s.ok(o.run(r))
                elif isinstance(o, NoChange):
                    self._scripts(r, o.scripts, step)
                    s.ok(o.reason)
                elif self.dry:
                    s.change(f"would {o.what}")
                    diff = o.diff and self._diff(r, o.diff)
                else:
                    s.change(self._apply(r, step, o))
                    changed = True
            finally:
                r.progress = None
        if diff:
            self.rep.info(diff)
        return changed

    def _background(self, r: HostRun, step: str, o: Change) -> Future:
        def work() -> None:
            with self.rep.step(r.name, step) as s:
                s.change(self._apply(r, step, o, on_line=s.progress))

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{r.name}-{step}")
        try:
            return pool.submit(work)
        finally:
            pool.shutdown(wait=False)

    def _apply(self, r: HostRun, step: str, o: Change, on_line=None) -> str:
        r.applied.append(step)
        self._scripts(r, o.scripts, step, on_line)
        said = o.run(r) if o.run else None
        return said or o.done or o.what

    def _scripts(self, r: HostRun, scripts: tuple[Script, ...], step: str,
                 on_line: Callable[[str], None] | None = None) -> None:
        if self.dry:
            return
        for sc in scripts:
            stdin = sc.stdin() if callable(sc.stdin) else sc.stdin
            try:
                remote.sh(r.conn, sc.text, step=step, sudo=True, stdin=stdin,
                          timeout=sc.timeout, on_line=on_line or r.progress)
            except RailsfabError as exc:
                if sc.fix:
                    exc.fix = sc.fix
                raise

    def _diff(self, r: HostRun, d: Diff) -> str:
        old = d.old if d.old is not None else (r.facts.text(d.path) if r.facts else None) or ""
        where = d.path if d.old is not None else f"{r.name}:{d.path}"
        diff = difflib.unified_diff(old.splitlines(keepends=True), d.new.splitlines(keepends=True),
                                    where, "rendered")
        return "".join(diff).rstrip() or f"(new file {d.path})"
