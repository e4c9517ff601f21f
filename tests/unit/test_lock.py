"""The deploy lock, as the host runs it (onhost/facts.py): of runs taking over a dead run's
lock at once, or taking it fresh meanwhile, exactly one gets it; a run releases only its own
lock."""

from __future__ import annotations

import json
import multiprocessing
import os

from railsfab.lock import holder, is_stale
from railsfab.onhost import facts

DEAD = {"owner": "ci@runner", "machine": "m1", "pid": 999999, "token": "dead"}


def take(path: str, token: str, steal_if: dict, queue) -> None:
    me = {"owner": "ci@runner", "machine": "m1", "pid": os.getpid(), "token": token}
    queue.put((token, facts.take_lock({"path": path, "holder": me, "steal_if": steal_if})))


def plant(path) -> None:
    os.makedirs(path)
    with open(path / "holder.json", "w") as f:
        json.dump(DEAD, f)


def test_two_takeovers_of_a_dead_lock_one_wins(tmp_path):
    for round_ in range(20):
        path = tmp_path / f"lock{round_}"
        plant(path)
        queue = multiprocessing.Queue()
        runs = [multiprocessing.Process(target=take, args=(str(path), t, DEAD, queue))
                for t in ("a", "b")]
        for p in runs:
            p.start()
        for p in runs:
            p.join(10)
        got = dict(queue.get(timeout=5) for _ in runs)
        winners = [t for t, g in got.items() if g["acquired"]]
        assert len(winners) == 1, got
        held = json.loads((path / "holder.json").read_text())
        assert held["token"] == winners[0]
        loser = next(g for g in got.values() if not g["acquired"])
        assert loser["holder"]["token"] in (winners[0], "dead")


def test_three_interleaved_runs_only_one_holds_the_lock(tmp_path, monkeypatch):
    """Scripted: run c reads the dead run's holder; before it acts on that, run b takes the
    lock over (and holds it); c goes on; when c next reads a holder, run d tries the lock
    fresh. Before the takeover guard, c moved b's live lock aside on its stale read, d took
    the free name, c could not put b's back: b and d both held the lock."""
    path = tmp_path / "lock"
    plant(path)
    read = facts._holder
    actor, reads, got = [], {"c": 0}, {}

    def take(token, steal_if=None):
        actor.append(token)
        me = {"owner": "ci@runner", "machine": "m1", "pid": os.getpid(), "token": token}
        got[token] = facts.take_lock({"path": str(path), "holder": me, "steal_if": steal_if})
        actor.pop()

    def scripted(p, wait=0.0):
        held = read(p, wait)
        if actor[-1] == "c":
            reads["c"] += 1
            if reads["c"] == 1:
                take("b", DEAD)  # c's read is stale from here on
            elif reads["c"] == 2:
                take("d")
        return held

    monkeypatch.setattr(facts, "_holder", scripted)
    take("c", DEAD)
    winners = sorted(t for t, g in got.items() if g["acquired"])
    assert winners == ["b"], got
    assert json.loads((path / "holder.json").read_text())["token"] == "b"
    assert sorted(os.listdir(tmp_path)) == ["lock"]


def test_a_takeover_guard_left_by_a_killed_run_does_not_block_forever(tmp_path):
    path = tmp_path / "lock"
    plant(path)
    guard = tmp_path / "lock.takeover"
    guard.mkdir()
    mine = {"owner": "ci@runner", "machine": "m1", "pid": os.getpid(), "token": "e"}
    assert not facts.take_lock({"path": str(path), "holder": mine, "steal_if": DEAD})["acquired"]
    os.utime(guard, (0, 0))  # long ago
    assert facts.take_lock({"path": str(path), "holder": mine, "steal_if": DEAD})["acquired"]


def test_a_run_releases_its_own_lock_only(tmp_path, capsys):
    path = tmp_path / "lock"
    mine = {"owner": "me@laptop", "token": "t1"}
    assert facts.take_lock({"path": str(path), "holder": mine})["acquired"]
    facts.release_lock({"path": str(path), "token": "someone else's"})
    assert json.loads(capsys.readouterr().out)["released"] is False and path.is_dir()
    facts.release_lock({"path": str(path), "token": "t1"})
    assert json.loads(capsys.readouterr().out)["released"] is True and not path.exists()


def test_a_lock_is_stale_only_from_this_machine_and_a_dead_process():
    me = holder("fab deploy")
    dead = {**me, "pid": 999999}
    assert is_stale(dead, me)
    assert not is_stale({**dead, "machine": "another machine, same hostname"}, me)
    assert not is_stale({**me, "pid": os.getpid()}, me)  # alive
    assert "token" in me and len(me["token"]) == 32
