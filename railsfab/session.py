"""One command's web hosts: connected, read and locked before anything changes.

Every command that changes hosts (deploy, rollback, restart) opens a Session: SSH to every
host, the facts read and the deploy lock taken in the same round trip per host, a lock left by
a dead run of ours taken over. Only then may a host leave the target group. Closing releases
the locks (also after a failure or Ctrl-C) and the connections.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from railsfab import appserver, facts, lock, remote, rolling
from railsfab.errors import RailsfabError
from railsfab.executor import HostRun, parallel
from railsfab.inventory import Inventory
from railsfab.paths import Paths
from railsfab.report import Reporter


class Session:
    def __init__(self, inv: Inventory, rep: Reporter, *, only: str | None, command: str,
                 locking: bool = True) -> None:
        self.inv = inv
        self.rep = rep
        self.app = inv.stage.app
        self.paths = Paths.of(self.app)
        self.server = appserver.for_app(self.app, self.paths, https=inv.stage.https)
        self.command = command
        hosts = inv.hosts(role="web", only=only)
        if not hosts:
            raise RailsfabError(f"stage {inv.stage_name} has no host with role 'web'",
                                step="hosts", fix=f"give a host `roles: [web]` in {inv.path}")
        self.runs = {h.name: HostRun(h) for h in hosts}
        self.holder = lock.holder(command) if locking else None
        self._tg: rolling.TargetGroup | None | bool = False

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def hosts(self):
        return [r.host for r in self.runs.values()]

    def open(self, spec: facts.Spec, *, target_group: bool = False) -> None:
        """Connect, read the facts (and take the lock) on every host; raise the first
        failure, having touched nothing. With `target_group`, the stage's target group is
        looked up meanwhile (boto3's import and AWS's answers overlap SSH's)."""
        if target_group and self._wants_tg():
            self._tg_lookup = ThreadPoolExecutor(max_workers=1)
            self._tg_future = self._tg_lookup.submit(self._find_tg)
        parallel(lambda r: self._read(r, spec), self.runs.values(), "facts")
        self.raise_if_failed()
        if target_group:  # a stack without its outputs stops the command here
            try:
                self.target_group()
            except RailsfabError as exc:
                exc.state = exc.state or self.serving()
                raise
        for r in self.runs.values():
            self._settle_lock(r)

    def _read(self, r: HostRun, spec: facts.Spec) -> None:
        with self.rep.step(r.name, "facts") as s:
            r.conn = remote.open_checked(self.inv, r.host)
            try:
                r.facts = facts.gather(r.conn, self.paths, spec, lock_holder=self.holder)
            except RailsfabError as exc:  # the host's facts were refused: the lock is ours
                got = getattr(exc, "lock", None)
                r.locked = bool(isinstance(got, dict) and got.get("acquired"))
                raise
            r.locked = bool(r.facts.lock and r.facts.lock["acquired"])
            s.ok(f"{r.facts.os}, current release {r.facts.current or '-'}")

    def _settle_lock(self, r: HostRun) -> None:
        got = r.facts.lock
        if got is None or got["acquired"]:
            return
        if not lock.is_stale(got["holder"], self.holder):
            raise lock.refused(r.name, got["holder"])
        with self.rep.step(r.name, "lock") as s:
            lock.acquire(r.conn, self.paths, self.holder, steal_if=got["holder"])
            r.locked = True
            s.change(f"took over the lock of a dead deploy: {lock.describe(got['holder'])}")

    def _wants_tg(self) -> bool:
        a = self.inv.stage.aws
        return bool(a.target_group_arn or a.stack_name)

    def _find_tg(self) -> rolling.TargetGroup | None:
        """The stage's target group; None only for a stage without aws.stack_name and
        aws.target_group_arn. A stack lacking an output the command reads raises."""
        if not self._wants_tg():
            return None
        from railsfab import outputs

        a = self.inv.stage.aws
        tg = rolling.TargetGroup(self.inv, outputs.required(self.inv) if a.stack_name else None)
        # clients made while SSH runs (each reads its model: ~0.1-0.3 s)
        tg.c.elbv2  # noqa: B018 - the roll asks the target group
        if a.stack_name:
            tg.c.ec2  # noqa: B018 - the "sg + profile" step asks EC2
        return tg

    def target_group(self) -> rolling.TargetGroup | None:
        """The stage's target group, when it has one (deploys then roll through it);
        raises when the stage's stack lacks what it needs."""
        if self._tg is False:
            future = getattr(self, "_tg_future", None)
            self._tg = future.result() if future is not None else self._find_tg()
        return self._tg  # type: ignore[return-value]

    # --- failures -------------------------------------------------------------------------

    def failed(self) -> list[HostRun]:
        return [r for r in self.runs.values() if r.error]

    def raise_if_failed(self, state: str | None = None, fix: str | None = None) -> None:
        failed = self.failed()
        if not failed:
            return
        err = failed[0].error
        if not err.state:
            err.state = state or self.serving()
        if not err.fix and fix:
            err.fix = fix
        if len(failed) > 1:
            err.message += "\n(also failed: " + ", ".join(
                f"{r.name} at {r.error.step}" for r in failed[1:]) + ")"
        raise err

    def serving(self) -> str:
        said = []
        for r in self.runs.values():
            cur = r.facts.current if r.facts else None
            said.append(f"{r.name} serving {cur}" if cur else f"{r.name} has no release yet")
        return "current unchanged: " + "; ".join(said)

    # --- the end ----------------------------------------------------------------------------

    def close(self) -> None:
        """Release our locks and close every connection; never raises (a lock left behind
        is reported as stale next time)."""
        def release(r: HostRun) -> None:
            try:
                lock.release(r.conn, self.paths, self.holder)
                r.locked = False
            except Exception:  # noqa: BLE001 - reported as a stale lock next time
                pass

        held = [r for r in self.runs.values() if r.locked and r.conn is not None]
        if held:
            with ThreadPoolExecutor(max_workers=len(held)) as pool:
                list(pool.map(release, held))
        for r in self.runs.values():
            if r.conn is not None:
                r.conn.close()
        lookup = getattr(self, "_tg_lookup", None)
        if lookup is not None:
            lookup.shutdown(wait=False)
