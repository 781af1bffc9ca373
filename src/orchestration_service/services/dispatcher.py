"""Background flows that move tasks without a request: routing, dispatch, timeouts.

Each is safe with several replicas: routing claims tasks with a lease, the timeout sweep
with row locks (SKIP LOCKED), and the per-project dispatch decision is serialised by a
project lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from orchestration_service.background import cancel_and_wait
from orchestration_service.config import Settings
from orchestration_service.domain.lifecycle import TaskStatus
from orchestration_service.domain.tasks import with_values
from orchestration_service.redaction import error_text
from orchestration_service.repositories.ports import Storage, UnitOfWork
from orchestration_service.repositories.tasks import TaskRecord
from orchestration_service.services.lifecycle import Lifecycle, utcnow
from orchestration_service.services.routing_engine import Outcome, RoutingEngine

log = logging.getLogger(__name__)

# Projects dispatched per transaction. Building a batch's events is CPU work between two
# awaits: a smaller batch keeps requests from waiting behind it, and holds fewer project
# locks at once.
DISPATCH_BATCH = 50


class _Loop:
    """A background loop that wakes on demand or every ``interval`` seconds."""

    name = "loop"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.last_error: str | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        # The flag as well as the cancellation: on Python 3.11 a cancellation that meets a
        # timeout inside asyncio.wait_for (ours, or asyncpg's command timeout) can come out as
        # TimeoutError, which the loop retries; without the flag the loop outlived its app
        # (a stopped app's router went on routing another app's tasks in one test run).
        self._stopping = True
        if self._task is not None:
            await cancel_and_wait(self._task, self.name)
            self._task = None

    async def _run(self) -> None:
        backoff = 0.1
        while not self._stopping:
            try:
                busy = await self.tick()
                self.last_error = None
                backoff = 0.1
                if busy:
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = error_text(exc)
                log.warning("%s: %s; retrying in %.1fs", self.name, self.last_error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()

    async def tick(self) -> bool:
        """Do one round of work; True if there may be more right away."""
        raise NotImplementedError


@dataclass(slots=True)
class _Routed:
    task: TaskRecord
    outcome: Outcome
    started: float  # monotonic time of the claim


@dataclass(slots=True)
class RoutedNow:
    """A routing decision made at submission (see ``Dispatcher.route_at_submission``)."""

    values: dict[str, Any]  # the task's routing columns
    reason: str  # its history note
    details: dict[str, Any]
    analyzer: str
    seconds: float


class Dispatcher(_Loop):
    """Routes newly submitted tasks and dispatches them as slots allow.

    Routing may call the Agent and RAG services (seconds each), so no transaction or row
    lock is held across it:

    1. claim: one short transaction sets a lease (``routing_claimed_until``) on up to as
       many unrouted pending tasks as there are free analysis slots;
    2. analyse: each claimed task is analysed in its own asyncio task, concurrently (at most
       ``max_concurrent_analyses``), outside any transaction;
    3. apply: the loop applies the analyses that have finished in one short transaction:
       each decision is written only if its task is still pending and unrouted (it may have
       been cancelled meanwhile), recorded in the history, an accepted plan's subtasks are
       created, and each project concerned is dispatched once.

    With the built-in analyzer only (no remote call), claim, decide and apply are one short
    transaction per batch. A replica that dies mid-analysis leaves leases that expire; a
    graceful stop gives its claims back at once.
    """

    name = "router"

    def __init__(
        self, storage: Storage, lifecycle: Lifecycle, engine: RoutingEngine, settings: Settings
    ) -> None:
        super().__init__(interval=1.0)
        self.storage = storage
        self.lifecycle = lifecycle
        self.engine = engine
        self.settings = settings
        # Without remote calls an analysis takes microseconds: claim bigger batches.
        self.batch = engine.capacity if engine.remote else max(engine.capacity, 100)
        self._claimed: set[uuid.UUID] = set()  # claimed by this router, not applied yet
        self._jobs: set[asyncio.Task[None]] = set()
        self._finished: list[_Routed] = []  # analysed, waiting to be applied
        self._dispatch_due: set[str] = set()  # projects with tasks routed at submission
        self.routed = 0
        self.discarded = 0

    @property
    def analyses_in_flight(self) -> int:
        return len(self._jobs)

    def route_at_submission(self, task: TaskRecord) -> RoutedNow | None:
        """Route a new task as it is submitted when that needs no remote call (the built-in
        analyzer only, no decomposition): its columns and its history note, written in the
        submission's own transaction. None: the task waits for this loop's routing."""
        outcome = self.engine.decide_locally(task)
        if outcome is None:
            return None
        values, routing = self._routing_values(task, outcome)
        decision = outcome.decision
        return RoutedNow(
            values=values,
            reason=f"routed by {decision.analyzer}: {decision.reason}",
            details={**routing, "seconds": round(outcome.seconds, 3)},
            analyzer=decision.analyzer,
            seconds=outcome.seconds,
        )

    def submitted(self, project_id: str, routed: RoutedNow | None) -> None:
        """After a submission committed: dispatch its project if it was routed, else route."""
        if routed is not None:
            self.routed += 1
            self.engine.routed(routed.analyzer, routed.seconds)
            self._dispatch_due.add(project_id)
        self.wake()

    def slot_freed(self, project_id: str) -> None:
        """After a commit that took a task of the project out of the running states."""
        self._dispatch_due.add(project_id)
        self.wake()

    async def tick(self) -> bool:
        self._wake.clear()
        if self._dispatch_due:
            due, self._dispatch_due = sorted(self._dispatch_due), set()
            try:
                # Most freed slots have nobody waiting, and most submissions land in a
                # project that is full: one read finds the projects where a task could start,
                # instead of a locking transaction per batch of projects that finds nothing.
                # A task routed or a slot freed after this read queues its own dispatch.
                async with self.storage.read() as uow:
                    due = await uow.tasks.with_waiting_tasks(
                        due, self.settings.task_management.max_concurrent_per_project
                    )
            except BaseException:
                self._dispatch_due.update(due)
                raise
            for i in range(0, len(due), DISPATCH_BATCH):
                try:
                    async with self.storage.transaction() as uow:
                        await self.lifecycle.dispatch_projects(uow, due[i : i + DISPATCH_BATCH])
                except BaseException:
                    self._dispatch_due.update(due[i:])  # retried on the next tick
                    raise
        finished, self._finished = self._finished, []
        if finished:
            await self._apply_all(finished)
        free = self.batch - len(self._claimed)
        if free <= 0:
            return bool(finished)  # a finishing analysis wakes the loop
        now = utcnow()
        until = now + timedelta(seconds=self.engine.lease_seconds)
        if not self.engine.remote:
            return await self._route_locally(now, until, free)
        async with self.storage.transaction() as uow:
            rows = await uow.tasks.claim_unrouted(now, until, free)
        self._claimed.update(row["id"] for row in rows)
        for task in rows:
            job = asyncio.create_task(self._analyse(task, time.monotonic()), name=f"route-{task['id']}")
            self._jobs.add(job)
            job.add_done_callback(self._jobs.discard)
        return bool(finished) or len(rows) == free

    async def _route_locally(self, now: datetime, until: datetime, free: int) -> bool:
        """Built-in analyzer only: claim, decide and apply in one short transaction."""
        started = time.monotonic()
        async with self.storage.transaction() as uow:
            rows = await uow.tasks.lock_unrouted(now, free)
            batch = [_Routed(r, await self._outcome(r), started) for r in rows]
            applied = await self._apply_in(uow, batch, locked=True)
        self._count(batch, applied)
        self._dispatch_later(applied)
        return len(rows) == free

    async def _analyse(self, task: TaskRecord, started: float) -> None:
        outcome = await self._outcome(task)
        self._finished.append(_Routed(task, outcome, started))
        self.wake()

    async def _outcome(self, task: TaskRecord) -> Outcome:
        try:
            return await self.engine.analyze(task)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug, not a remote failure: route by the rules anyway
            log.exception("router: analysis of task %s failed", task["id"])
            decision = self.engine.builtin.analyze(task["description"])
            decision.reason = f"analysis error ({type(exc).__name__}: {exc}); builtin: {decision.reason}"
            return Outcome(decision.apply_pins(task.get("options") or {}))

    async def _apply_all(self, batch: list[_Routed]) -> None:
        try:
            async with self.storage.transaction() as uow:
                applied = await self._apply_in(uow, batch)
        except asyncio.CancelledError:
            self._finished[:0] = batch  # not applied: stop() gives the claims back
            raise
        except Exception as exc:
            if len(batch) > 1:  # find the one that fails; apply the others
                for one in batch:
                    await self._apply_all([one])
                return
            # Nothing was written; the claim stays until its lease expires, then it is retried.
            self.last_error = error_text(exc)
            log.warning(
                "router: applying the route of task %s failed: %s", batch[0].task["id"], self.last_error
            )
            self._claimed.discard(batch[0].task["id"])
            return
        self._count(batch, applied)
        self._dispatch_later(applied)

    def _dispatch_later(self, applied: list[_Routed]) -> None:
        """Dispatch the projects of routed tasks in a transaction of its own, after the
        routing one committed: a transaction that holds task rows never waits for a project
        lock here (a cancel takes its task's row, then the project lock)."""
        if applied:
            self._dispatch_due.update(item.task["project_id"] for item in applied)
            self.wake()

    def _count(self, batch: list[_Routed], applied: list[_Routed]) -> None:
        now = time.monotonic()
        for item in batch:
            self._claimed.discard(item.task["id"])
        self.routed += len(applied)
        self.discarded += len(batch) - len(applied)
        for item in applied:
            self.engine.routed(item.outcome.decision.analyzer, now - item.started)

    async def stop(self) -> None:
        await super().stop()
        jobs = list(self._jobs)
        for job in jobs:
            job.cancel()
        for job in jobs:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await job
        claimed, self._claimed, self._finished = list(self._claimed), set(), []
        if claimed:
            try:
                async with self.storage.transaction() as uow:
                    await uow.tasks.release_claims(claimed)
            except Exception as exc:  # the leases expire anyway
                log.warning("router: could not release %d claims: %s", len(claimed), exc)

    async def _apply_in(
        self, uow: UnitOfWork, batch: list[_Routed], *, locked: bool = False
    ) -> list[_Routed]:
        """Write the decisions of ``batch`` in ``uow`` (the caller dispatches after commit).

        ``locked``: this transaction holds the tasks' rows (they are still pending and
        unrouted), so the plain decisions are written in bulk."""
        plain = [
            i
            for i in batch
            if locked and i.outcome.plan is None and not (i.outcome.rag_error or i.outcome.not_decomposed)
        ]
        if plain:
            await self._apply_plain(uow, plain)
        chosen = {id(i) for i in plain}
        return plain + [
            item
            for item in batch
            if id(item) not in chosen and await self._apply_one(uow, item.task, item.outcome)
        ]

    async def _apply_plain(self, uow: UnitOfWork, batch: list[_Routed]) -> None:
        """Decisions with no plan and nothing to add: one UPDATE batch, one history insert."""
        changes = []
        notes = []
        for item in batch:
            values, routing = self._routing_values(item.task, item.outcome)
            changes.append((item.task["id"], {**values, "routing_claimed_until": None}))
            decision = item.outcome.decision
            notes.append(
                (
                    with_values(item.task, values),
                    f"routed by {decision.analyzer}: {decision.reason}",
                    "router",
                    {**routing, "seconds": round(item.outcome.seconds, 3)},
                )
            )
        await uow.tasks.update_many(changes)
        await self.lifecycle.notes(uow, notes)

    @staticmethod
    def _routing_values(task: TaskRecord, outcome: Outcome) -> tuple[dict[str, Any], dict[str, Any]]:
        """The task's columns a routing outcome sets, and the ``routing`` document."""
        decision = outcome.decision
        routing = decision.as_dict()
        if outcome.plan is not None:
            routing["plan"] = [
                {"id": s.id, "depends_on": list(s.dependencies), "is_atomic": s.is_atomic}
                for s in outcome.plan.subtasks
            ]
        elif outcome.not_decomposed:
            routing["not_decomposed"] = outcome.not_decomposed
        if outcome.rag_error:
            routing["rag_error"] = outcome.rag_error
        context = dict(task.get("context") or {})
        context["routing"] = {"analyzer": decision.analyzer, "reason": decision.reason}
        if outcome.rag is not None:
            context["rag"] = outcome.rag
        now = utcnow()
        values = {
            "mode": decision.mode,
            "domain": decision.domain,
            "tier": decision.tier,
            "qa_profile": decision.qa_profile,
            "routing": routing,
            "context": context,
            "routed_at": now,
            "updated_at": now,
        }
        return values, routing

    async def _apply_one(self, uow: UnitOfWork, task: TaskRecord, outcome: Outcome) -> bool:
        values, routing = self._routing_values(task, outcome)
        decision = outcome.decision
        if not await uow.tasks.mark_routed(task["id"], values):
            # Cancelled meanwhile (or routed by another router whose lease we outlived).
            log.debug("router: task %s is no longer pending and unrouted; result dropped", task["id"])
            return False
        routed = with_values(task, {**values, "routing_claimed_until": None})
        await self.lifecycle.note(
            uow,
            routed,
            reason=f"routed by {decision.analyzer}: {decision.reason}",
            cause="router",
            details={**routing, "seconds": round(outcome.seconds, 3)},
        )
        if outcome.rag_error:
            why = f"no RAG context: {outcome.rag_error}; dispatched without it"
            await self.lifecycle.note(uow, routed, reason=why, cause="router")
        if outcome.not_decomposed:
            await self.lifecycle.note(
                uow, routed, reason=f"runs whole: {outcome.not_decomposed}", cause="router"
            )
        if outcome.plan is not None:
            await self.lifecycle.decompose(uow, routed, outcome.plan, cause="router")
        return True


class Sweeper(_Loop):
    """Fails or retries tasks in flight past their deadline or silent past their heartbeat
    timeout; re-dispatches as a safety net."""

    name = "sweeper"
    batch = 100

    def __init__(self, storage: Storage, lifecycle: Lifecycle, settings: Settings) -> None:
        super().__init__(interval=settings.task_management.sweep_interval_seconds)
        self.storage = storage
        self.lifecycle = lifecycle
        self.timed_out = 0

    async def tick(self) -> bool:
        more = await self._timeouts()
        more = await self._heartbeat_timeouts() or more
        await self._dispatch_waiting()
        return more

    async def _timeouts(self) -> bool:
        async with self.storage.transaction() as uow:
            rows = await uow.tasks.overdue(utcnow(), self.batch)
            for task in rows:
                if TaskStatus(task["status"]) not in (TaskStatus.RUNNING, TaskStatus.VALIDATING):
                    continue
                await self.lifecycle.retry_or_fail(
                    uow,
                    task,
                    reason="timeout",
                    cause="sweeper",
                    error=f"no result within {task['timeout_seconds']}s (attempt {task['attempt']})",
                )
                self.timed_out += 1
        return len(rows) == self.batch

    async def _heartbeat_timeouts(self) -> bool:
        """Running tasks silent (no progress, no output) past their heartbeat timeout: timed
        out as above, with the reason ``heartbeat_timeout``."""
        async with self.storage.transaction() as uow:
            rows = await uow.tasks.heartbeat_overdue(utcnow(), self.batch)
            for task in rows:
                if TaskStatus(task["status"]) != TaskStatus.RUNNING:
                    continue
                silent = f"{task['heartbeat_seconds']}s (attempt {task['attempt']})"
                await self.lifecycle.retry_or_fail(
                    uow,
                    task,
                    reason="heartbeat_timeout",
                    cause="sweeper",
                    error=f"no progress or output for {silent}",
                )
                self.timed_out += 1
        return len(rows) == self.batch

    async def _dispatch_waiting(self) -> None:
        async with self.storage.read() as uow:
            projects = await uow.tasks.projects_with_waiting_work(
                self.lifecycle.settings.task_management.max_concurrent_per_project
            )
        for i in range(0, len(projects), 100):
            async with self.storage.transaction() as uow:
                await self.lifecycle.dispatch_projects(uow, projects[i : i + 100])
