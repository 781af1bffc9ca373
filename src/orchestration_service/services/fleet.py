"""The fleet in view: workers seen on consumed events, queues per tier, recent failures.

Workers are recorded from the event handlers, inside the event's own transaction
(``worker_seen``, ``attempt_finished``): the attempt's row is keyed by the task, whose row
the handler has already locked, so it costs one upsert and no new lock. The worker's own row
(first and last seen) is written at most every ``fleet.seen_interval_seconds`` per worker and
process, so many events of one worker do not wait on each other for that row.

What a project-scoped caller sees is computed from its projects' rows alone: the workers that
worked on them, with first/last seen, tiers, models and counts from those tasks; queue counts
of its tasks. The broker's queue figures (depth, consumers) are the shared infrastructure's,
the same for every caller.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from orchestration_service.config import Settings
from orchestration_service.domain.lifecycle import TaskStatus
from orchestration_service.domain.paging import LIST_TOTAL_CAP
from orchestration_service.domain.tasks import TaskRecord
from orchestration_service.domain.vocabulary import TIERS
from orchestration_service.repositories.ports import Storage, UnitOfWork
from orchestration_service.repositories.workers import AttemptSeen, FailureFilter, FailurePage

__all__ = ["FailureFilter", "FailurePage", "FleetService", "QueueInspector"]

UNROUTED = "unrouted"  # the queue of pending tasks not routed to a tier yet


@dataclass(frozen=True, slots=True)
class BrokerQueue:
    name: str
    exists: bool
    messages: int | None = None
    consumers: int | None = None


@dataclass(frozen=True, slots=True)
class BrokerReport:
    """The broker's figures per tier. ``source``: management-api | passive-declare |
    not-applicable (the in-process bus has no queues of workers)."""

    source: str
    queues: dict[str, list[BrokerQueue]] = field(default_factory=dict)
    error: str | None = None


class QueueInspector(Protocol):
    async def inspect(self, tiers: Sequence[str]) -> BrokerReport: ...


class NoBrokerQueues:
    async def inspect(self, tiers: Sequence[str]) -> BrokerReport:
        return BrokerReport("not-applicable")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class FleetService:
    def __init__(self, storage: Storage, settings: Settings, inspector: QueueInspector | None = None) -> None:
        self.storage = storage
        self.settings = settings.fleet
        self.inspector: QueueInspector = inspector or NoBrokerQueues()
        self._touched: dict[str, float] = {}  # worker id -> monotonic time its row was last written
        # (task id, attempt, worker id) of a progress report -> monotonic time it was recorded
        self._reported: dict[tuple[uuid.UUID, int | None, str], float] = {}

    # -- the event path (called by the handlers, in the event's transaction) --------------
    async def worker_seen(
        self,
        uow: UnitOfWork,
        task: TaskRecord,
        worker_id: str,
        *,
        model: str | None = None,
        at: datetime | None = None,
        outcome: str | None = None,
    ) -> None:
        """``worker_id`` reported on ``task``'s current attempt (progress, output, failure;
        ``outcome`` "failed" for the last). One upsert keyed by the attempt; the worker's row
        only when this process has not written it within ``seen_interval_seconds``."""
        at = at or _utcnow()
        await uow.workers.record_attempt(
            task_id=task["id"],
            attempt=int(task["attempt"]),
            worker_id=worker_id,
            project_id=task["project_id"],
            tier=task.get("tier"),
            model=model,
            at=at,
            outcome=outcome,
        )
        now = time.monotonic()
        last = self._touched.get(worker_id)
        if last is not None and now - last < self.settings.seen_interval_seconds:
            return
        await uow.workers.touch(worker_id, at)
        if len(self._touched) > 100_000:
            self._touched.clear()

        def written() -> None:
            self._touched[worker_id] = now

        uow.after_commit(written)

    async def progress_reported(self, reports: Sequence[tuple[uuid.UUID, int | None, str]]) -> None:
        """Workers named by kept ``task.progress`` reports (task id, attempt, worker id), so that
        a heartbeat stays one shared UPDATE nearly always: in this process, the attempt's row
        is written at most every tenth of ``worker_stale_seconds`` (its worker stays fresh for
        a project's callers) and the worker's row every ``seen_interval_seconds``, in a
        transaction of their own. The batch's due rows go in three statements (its tasks read,
        its attempts and its workers written), whatever its size: with many tasks heartbeating,
        a report is often the first this process sees of its attempt."""
        now = time.monotonic()
        every = max(self.settings.seen_interval_seconds, self.settings.worker_stale_seconds / 10)
        keys = dict.fromkeys(reports)
        due = [k for k in keys if now - self._reported.get(k, -every - 1) >= every]
        interval = self.settings.seen_interval_seconds
        workers = {w for _t, _a, w in keys if now - self._touched.get(w, -interval - 1) >= interval}
        if not due and not workers:
            return
        if len(self._reported) > 100_000:
            self._reported.clear()
        if len(self._touched) > 100_000:
            self._touched.clear()
        at = _utcnow()
        async with self.storage.transaction() as uow:
            seen: dict[tuple[uuid.UUID, int], AttemptSeen] = {}
            if due:
                found = await uow.tasks.get_many(list({t for t, _a, _w in due}))
                for task_id, attempt, worker_id in due:
                    task = found.get(task_id)
                    if task is not None and (attempt is None or int(task["attempt"]) == attempt):
                        # Of two workers on one attempt in a batch, the later report's is kept.
                        current = int(task["attempt"])
                        seen[(task_id, current)] = AttemptSeen(
                            task_id, current, worker_id, task["project_id"], task.get("tier")
                        )
                await uow.workers.record_attempts(list(seen.values()), at)
            await uow.workers.touch_many(sorted(workers), at)
        for key in due:
            self._reported[key] = now
        for worker_id in workers:
            self._touched[worker_id] = now

    async def attempt_finished(self, uow: UnitOfWork, task: TaskRecord, outcome: str) -> None:
        """QA decided the task's current attempt (completed | rejected): its worker's count."""
        await uow.workers.set_outcome(task["id"], int(task["attempt"]), outcome, _utcnow())

    # -- reads -----------------------------------------------------------------------------
    async def workers(self, project_ids: Sequence[str] | None, *, limit: int, offset: int) -> dict[str, Any]:
        async with self.storage.read() as uow:
            page = await uow.workers.page(project_ids, limit=limit, offset=offset)
        now = _utcnow()
        stale_after = self.settings.worker_stale_seconds
        items = [
            {
                "worker_id": w.worker_id,
                "first_seen": w.first_seen,
                "last_seen": w.last_seen,
                "stale": (now - w.last_seen).total_seconds() > stale_after,
                "tiers": list(w.tiers),
                "models": list(w.models),
                "in_flight": w.in_flight,
                "completed": w.completed,
                "failed": w.failed,
                "rejected": w.rejected,
            }
            for w in page.rows
        ]
        return {
            "items": items,
            "total": page.total,
            "limit": limit,
            "offset": offset,
            "stale_after_seconds": stale_after,
        }

    async def queues(self, project_ids: Sequence[str] | None) -> dict[str, Any]:
        async with self.storage.read() as uow:
            counts = await uow.workers.tier_counts(project_ids)
        now = _utcnow()
        tiers: dict[str, dict[str, Any]] = {
            t: {"tier": t, "pending": 0, "running": 0, "validating": 0, "oldest_waiting_seconds": None}
            for t in (*TIERS, UNROUTED)
        }
        for c in counts:
            row = tiers.setdefault(
                c.tier or UNROUTED,
                {"tier": c.tier, "pending": 0, "running": 0, "validating": 0, "oldest_waiting_seconds": None},
            )
            row[c.status] = c.count
            if c.status == TaskStatus.PENDING.value and c.oldest_created_at is not None:
                row["oldest_waiting_seconds"] = round(
                    max(0.0, (now - c.oldest_created_at).total_seconds()), 3
                )
        report = await self.inspector.inspect(TIERS)
        for name, row in tiers.items():
            found = report.queues.get(name)
            row["broker"] = (
                None
                if found is None
                else {
                    "messages": sum(q.messages or 0 for q in found),
                    "consumers": sum(q.consumers or 0 for q in found),
                    "queues": [
                        {"name": q.name, "exists": q.exists, "messages": q.messages, "consumers": q.consumers}
                        for q in found
                    ],
                }
            )
        return {
            "items": list(tiers.values()),
            "broker": {"source": report.source, "error": report.error},
        }

    async def failures(
        self,
        f: FailureFilter,
        *,
        limit: int,
        offset: int,
        after: tuple[datetime, uuid.UUID] | None,
    ) -> FailurePage:
        async with self.storage.read() as uow:
            return await uow.workers.failures(f, limit=limit, offset=offset, after=after, cap=LIST_TOTAL_CAP)
