"""Background flows that move tasks without a request: routing, dispatch, timeouts.

Each is safe with several replicas: work is claimed with row locks (SKIP LOCKED) and the
per-project dispatch decision is serialised by a project lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from orchestration_service.config import Settings
from orchestration_service.db.engine import Database
from orchestration_service.domain.lifecycle import TaskStatus
from orchestration_service.repositories.tasks import TaskRepository
from orchestration_service.services.lifecycle import Lifecycle, utcnow
from orchestration_service.services.routing_engine import RoutingEngine

log = logging.getLogger(__name__)


class _Loop:
    """A background loop that wakes on demand or every ``interval`` seconds."""

    name = "loop"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        backoff = 0.1
        while True:
            try:
                busy = await self.tick()
                self.last_error = None
                backoff = 0.1
                if busy:
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
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


class Router(_Loop):
    """Routes newly submitted tasks and dispatches them as slots allow."""

    name = "router"
    batch = 100

    def __init__(self, db: Database, lifecycle: Lifecycle, engine: RoutingEngine, settings: Settings) -> None:
        super().__init__(interval=1.0)
        self.db = db
        self.lifecycle = lifecycle
        self.engine = engine
        self.settings = settings

    async def tick(self) -> bool:
        self._wake.clear()
        async with self.db.transaction() as tx:
            repo = TaskRepository(tx.conn)
            rows = await repo.unrouted(self.batch)
            projects: set[str] = set()
            now = utcnow()
            for row in rows:
                task = dict(row)
                decision = await self.engine.decide(task)
                routing = decision.as_dict()
                await repo.update(
                    task["id"],
                    {
                        "mode": decision.mode,
                        "domain": decision.domain,
                        "tier": decision.tier,
                        "qa_profile": decision.qa_profile,
                        "routing": routing,
                        "context": {"routing": {"analyzer": decision.analyzer, "reason": decision.reason}},
                        "routed_at": now,
                        "updated_at": now,
                    },
                )
                await self.lifecycle.note(
                    tx,
                    task,
                    reason=f"routed by {decision.analyzer}: {decision.reason}",
                    cause="router",
                    details=routing,
                )
                projects.add(task["project_id"])
            for project_id in sorted(projects):
                await self.lifecycle.dispatch_project(tx, project_id)
        return len(rows) == self.batch


class Sweeper(_Loop):
    """Fails or retries tasks in flight past their deadline; re-dispatches as a safety net."""

    name = "sweeper"
    batch = 100

    def __init__(self, db: Database, lifecycle: Lifecycle, settings: Settings) -> None:
        super().__init__(interval=settings.task_management.sweep_interval_seconds)
        self.db = db
        self.lifecycle = lifecycle
        self.timed_out = 0

    async def tick(self) -> bool:
        more = await self._timeouts()
        await self._dispatch_waiting()
        return more

    async def _timeouts(self) -> bool:
        async with self.db.transaction() as tx:
            rows = await TaskRepository(tx.conn).overdue(utcnow(), self.batch)
            for row in rows:
                task: dict[str, Any] = dict(row)
                if TaskStatus(task["status"]) not in (TaskStatus.RUNNING, TaskStatus.VALIDATING):
                    continue
                await self.lifecycle.retry_or_fail(
                    tx,
                    task,
                    reason="timeout",
                    cause="sweeper",
                    error=f"no result within {task['timeout_seconds']}s (attempt {task['attempt']})",
                )
                self.timed_out += 1
        return len(rows) == self.batch

    async def _dispatch_waiting(self) -> None:
        async with self.db.read() as conn:
            projects = await TaskRepository(conn).projects_with_waiting_work()
        for project_id in projects:
            async with self.db.transaction() as tx:
                await self.lifecycle.dispatch_project(tx, project_id)
