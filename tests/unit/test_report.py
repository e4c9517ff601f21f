"""Progress output: the live lines of a terminal never block the steps that draw them."""

from __future__ import annotations

import io
import threading
import time

from rich.console import Console

from railsfab.report import Reporter


def test_live_lines_survive_many_hosts_stepping_at_once():
    out = io.StringIO()
    rep = Reporter(Console(file=out, force_terminal=True, width=120), live=True)

    def host(n: int) -> None:
        for i in range(100):
            with rep.step(f"web{n}", f"step {i}") as s:
                s.progress(f"doing {i}")
                time.sleep(0)
                s.ok("done")

    threads = [threading.Thread(target=host, args=(n,), daemon=True) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "a step is stuck on the live display"
    rep.recap("test")
    assert len(rep.results) == 8 * 100
    assert "web7" in out.getvalue() and "recap" in out.getvalue()


def test_without_a_terminal_only_the_step_lines_are_printed():
    out = io.StringIO()
    rep = Reporter(Console(file=out, width=120))
    with rep.step("web1", "packages") as s:
        s.progress("Unpacking nginx")
        s.change("installed nginx")
    assert "Unpacking" not in out.getvalue()
    assert "web1     changed  packages" in out.getvalue()
