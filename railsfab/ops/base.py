"""Operations: each deploy step decides from the facts what it would change, purely.

An operation is a function `(facts, desired, plan so far) -> Change | NoChange | Check |
None`. It reads nothing and runs nothing: the executor (railsfab.executor) runs a Change's
scripts (or prints them, in a dry run), reports a NoChange's reason, runs a Check after real
changes only. None means the step does not concern this host (nothing is shown). Because a
step sees the plan so far, "restart because the env file changes" is decided before
anything runs, and every decision is a unit test: facts in, outcome out (pyinfra's
operations and Kamal's command builders are the models).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from railsfab.executor import HostRun
    from railsfab.facts import Facts


@dataclass(frozen=True)
class Script:
    """A shell snippet run as root on the host; stdin is sent whole (an archive, a file).
    A callable stdin is built only when the script runs (never in a dry run)."""

    text: str
    stdin: bytes | Callable[[], bytes] | None = None
    timeout: float | None = 1800
    fix: str | None = None  # replaces the failure's fix when this script fails


@dataclass(frozen=True)
class Diff:
    """What a dry run shows for a file: `path`'s text now (`old`; None: as the host's facts
    read it) against the text the step would put there."""

    path: str
    new: str
    old: str | None = None


@dataclass(frozen=True)
class Change:
    """Something this step will change. `what` is said in the imperative ("install nginx");
    a dry run prints "would <what>", a real run prints `done` (default: `what`), or what
    `run` returns when the step's work is more than scripts (a verified restart)."""

    what: str
    scripts: tuple[Script, ...] = ()
    run: Callable[[HostRun], str | None] | None = None
    done: str | None = None
    diff: Diff | None = None  # a dry run shows it
    disturbs: bool = True  # does applying it touch what is being served?
    # it touches what is served without losing a request (`current` switched, a config file
    # the next handover reads, a USR2 or phased handover): the host stays in service
    gapless: bool = False
    # may run on its own channel while the phase's `alongside` steps that follow it run
    # (apt, while the user, the folders, the env file and the release are made)
    background: bool = False


@dataclass(frozen=True)
class NoChange:
    """Nothing that matters changes. `scripts` is bookkeeping inside the new release (reuse
    the previous release's lock file or assets), run in a real run, never shown as a change."""

    reason: str
    scripts: tuple[Script, ...] = ()


@dataclass(frozen=True)
class Check:
    """A verification run after this host's changes; skipped (not shown) when nothing in
    its phase changed (unless `always`), and in a dry run."""

    what: str
    run: Callable[[HostRun], str]
    always: bool = False


Outcome = Union[Change, NoChange, Check]  # noqa: UP007 - used at runtime in isinstance


@dataclass(frozen=True)
class Planned:
    step: str
    outcome: Outcome


@dataclass
class Plan:
    """The ordered outcomes of one host's steps (a phase, plus the earlier phases it saw)."""

    steps: list[Planned] = field(default_factory=list)

    def __iter__(self) -> Iterator[Planned]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def get(self, step: str) -> Outcome | None:
        return next((p.outcome for p in self.steps if p.step == step), None)

    def changes(self, step: str) -> bool:
        return isinstance(self.get(step), Change)

    @property
    def changed(self) -> list[Planned]:
        return [p for p in self.steps if isinstance(p.outcome, Change)]

    @property
    def disturbs(self) -> bool:
        """Will running it restart or reload anything that serves? (Then the host leaves
        the target group while it happens.)"""
        return any(p.outcome.disturbs for p in self.changed)

    @property
    def disrupts(self) -> bool:
        """Does it touch what serves in a way that may lose a request (a full restart, a
        server switch, nginx)? Then the host leaves the target group while it runs; a plan
        that only hands over stays in service (railsfab.rollout)."""
        return any(p.outcome.disturbs and not p.outcome.gapless for p in self.changed)

    @property
    def disruptive_steps(self) -> list[str]:
        return [p.step for p in self.changed if p.outcome.disturbs and not p.outcome.gapless]


Op = Callable[["Facts", Any, Plan], Union[Outcome, None]]  # noqa: UP007


@dataclass(frozen=True)
class Phase:
    """An ordered list of (step name, operation)."""

    name: str
    ops: tuple[tuple[str | Callable[[Any], str], Op], ...]

    def plan(self, facts: Facts, desired: Any, before: Plan | None = None) -> Plan:
        """This phase's outcomes; each operation sees `before` plus the outcomes so far."""
        seen = Plan(list(before.steps) if before else [])
        mine = Plan()
        for label, op in self.ops:
            step = label(desired) if callable(label) else label
            outcome = op(facts, desired, seen)
            if outcome is None:
                continue
            planned = Planned(step, outcome)
            seen.steps.append(planned)
            mine.steps.append(planned)
        return mine
