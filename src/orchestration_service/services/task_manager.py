"""Task use cases: submit, read, list, cancel, retry. One transaction each.

HTTP routes, the CLI (through HTTP) and the dashboard all reach tasks through here.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from orchestration_service import tracing
from orchestration_service.background import cancel_and_wait
from orchestration_service.config import Settings
from orchestration_service.db.errors import retry_conflicts
from orchestration_service.domain.errors import IdempotencyConflict, InvalidTransition, NotFound
from orchestration_service.domain.ids import uuid7
from orchestration_service.domain.lifecycle import IllegalTransition, Priority, TaskStatus
from orchestration_service.domain.paging import LIST_TOTAL_CAP
from orchestration_service.domain.tasks import HistoryRecord, TaskRecord, with_values
from orchestration_service.repositories.ports import Storage
from orchestration_service.repositories.tasks import Submission, TaskFilter
from orchestration_service.schemas.tasks import SubmitTask
from orchestration_service.services.lifecycle import Lifecycle, utcnow
from orchestration_service.services.project_settings import ProjectDirectory
from orchestration_service.services.task_tree import load_tree

if TYPE_CHECKING:
    from orchestration_service.services.dispatcher import Dispatcher

log = logging.getLogger(__name__)

__all__ = ["CompletionEstimator", "Submitted", "TaskFilter", "TaskManager", "TaskPage", "TaskView"]


@dataclass(slots=True)
class Submitted:
    task: TaskRecord
    estimated_completion: datetime
    replayed: bool


@dataclass(slots=True)
class TaskPage:
    rows: Sequence[TaskRecord]
    total: int  # at most LIST_TOTAL_CAP
    total_capped: bool  # more tasks match than ``total`` says
    has_more: bool


@dataclass(slots=True)
class TaskView:
    task: TaskRecord
    subtasks: Sequence[TaskRecord]
    dependencies: dict[uuid.UUID, list[uuid.UUID]]


class CompletionEstimator:
    """Median submission-to-completion time of recent completed tasks of a kind, for the
    ``estimated_completion`` of a submission.

    Kept off the submission's path: a kind's first caller waits for the one query that
    every concurrent caller shares; after that callers get the cached figure, and a figure
    older than ``ttl_seconds`` is refreshed in the background (one refresh per kind) while
    it is still answered. A failed query falls back to the configured default: the task is
    already stored by then, and an estimate is not worth failing its submission."""

    def __init__(self, storage: Storage, default_seconds: int, ttl_seconds: float = 5.0) -> None:
        self.storage = storage
        self.default = float(default_seconds)
        self.ttl = ttl_seconds
        self._cache: dict[tuple[str | None, str | None], tuple[float, float]] = {}
        self._refreshing: dict[tuple[str | None, str | None], asyncio.Task[float]] = {}

    async def seconds(self, *, tier: str | None = None, domain: str | None = None) -> float:
        key = (tier, domain)
        hit = self._cache.get(key)
        if hit is not None:
            value, at = hit
            if time.monotonic() - at >= self.ttl and key not in self._refreshing:
                self._start_refresh(key)
            return value
        task = self._refreshing.get(key) or self._start_refresh(key)
        # Shielded: one caller giving up (a dropped request) must not cancel the others' query.
        return await asyncio.shield(task)

    def _start_refresh(self, key: tuple[str | None, str | None]) -> asyncio.Task[float]:
        task = asyncio.create_task(self._refresh(key), name=f"estimate {key}")
        self._refreshing[key] = task
        task.add_done_callback(lambda _t: self._refreshing.pop(key, None))
        return task

    async def _refresh(self, key: tuple[str | None, str | None]) -> float:
        tier, domain = key
        try:
            async with self.storage.read() as uow:
                durations = await uow.tasks.recent_durations(tier=tier, domain=domain)
                if not durations and (tier or domain):
                    durations = await uow.tasks.recent_durations()
        except Exception as exc:
            log.warning("completion estimate for %s unavailable (%s); using the default", key, exc)
            stale = self._cache.get(key)
            return stale[0] if stale else self.default
        value = statistics.median(durations) if durations else self.default
        self._cache[key] = (value, time.monotonic())
        return value

    async def close(self) -> None:
        for task in list(self._refreshing.values()):
            await cancel_and_wait(task, "completion estimate")


def request_hash(cmd: SubmitTask) -> str:
    body = cmd.model_dump(mode="json", exclude_none=True)
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


class TaskManager:
    def __init__(
        self,
        storage: Storage,
        settings: Settings,
        lifecycle: Lifecycle,
        estimator: CompletionEstimator,
        dispatcher: Dispatcher | None = None,
        on_accepted: Callable[[str], None] = lambda _priority: None,
        projects: ProjectDirectory | None = None,
    ) -> None:
        self.storage = storage
        self.settings = settings
        self.lifecycle = lifecycle
        self.estimator = estimator
        self.dispatcher = dispatcher  # routes at submission when it can; told of every submission
        self.on_accepted = on_accepted  # metrics: a new task of this priority was accepted
        self.projects = projects or ProjectDirectory(storage, settings)

    async def submit(self, cmd: SubmitTask, *, idempotency_key: str | None = None) -> Submitted:
        tm = self.settings.task_management
        digest = request_hash(cmd) if idempotency_key else None
        if idempotency_key:
            replay = await self._replay(cmd.project_id, idempotency_key, digest)
            if replay is not None:
                return replay
        project = await self.projects.for_submission(cmd.project_id)
        now = utcnow()
        priority = Priority(cmd.priority or project.default_priority or tm.default_priority)
        opts = cmd.options
        options = opts.model_dump(mode="json", exclude_none=True)
        qa_profile = opts.qa_profile.value if opts.qa_profile else None
        if qa_profile is None and project.default_qa_profile:
            # The project's QA profile: a pin, as if the submission had named it.
            qa_profile = options["qa_profile"] = project.default_qa_profile
        row: TaskRecord = {
            "id": uuid7(),
            "project_id": cmd.project_id,
            "description": cmd.description,
            "priority": priority.value,
            "priority_rank": Priority(priority).rank,
            "status": TaskStatus.PENDING.value,
            "domain": opts.domain.value if opts.domain else None,
            "tier": opts.tier.value if opts.tier else None,
            "qa_profile": qa_profile,
            "options": options,
            "attempt": 0,
            "max_attempts": opts.max_attempts or project.max_attempts_default or tm.max_attempts_default,
            "timeout_seconds": opts.timeout_seconds
            or project.timeout_default_seconds
            or tm.timeout_default_seconds,
            "parent_id": None,
            "depth": 0,
            "idempotency_key": idempotency_key,
            "request_hash": digest,
            "traceparent": tracing.current_traceparent(),
            "created_at": now,
            "updated_at": now,
        }
        routed = self.dispatcher.route_at_submission(row) if self.dispatcher else None
        notes: list[HistoryRecord] = []
        if routed is not None:
            row = with_values(row, routed.values)
            notes.append(self.lifecycle.note_row(row, routed.reason, "router", routed.details, now))
        if not await self._insert(row, notes):
            # Two requests raced with one idempotency key: the first one won.
            replay = await self._replay(cmd.project_id, idempotency_key or "", digest)
            if replay is None:  # pragma: no cover - the winner cannot vanish
                raise IdempotencyConflict(f"Idempotency-Key {idempotency_key!r} is being used")
            return replay
        if self.dispatcher is not None:
            self.dispatcher.submitted(row["project_id"], routed)
        self.on_accepted(row["priority"])
        seconds = await self.estimator.seconds(tier=row["tier"], domain=row["domain"])
        return Submitted(row, now + timedelta(seconds=seconds), replayed=False)

    async def _insert(self, row: TaskRecord, notes: list[HistoryRecord]) -> bool:
        """The same rows as ``Lifecycle.create`` (and the routing note), through the hot
        path (on PostgreSQL with whatever other submissions are waiting: group commit), and
        the project's row when it has none yet."""
        history, events = self.lifecycle.creation_records([row], cause="api")
        project_id = row["project_id"]
        new = self.projects.unsaved(project_id)
        inserted = await self.storage.task_hot_paths.submit(
            Submission(row, [*history, *notes], events, new_project=new)
        )
        if new:
            self.projects.saved(project_id)
        if inserted:
            self.lifecycle.committed(None, TaskStatus.PENDING.value)
        return inserted

    async def _replay(self, project_id: str, key: str, digest: str | None) -> Submitted | None:
        async with self.storage.read() as uow:
            existing = await uow.tasks.get_by_idempotency_key(project_id, key)
        if existing is None:
            return None
        if existing["request_hash"] != digest:
            raise IdempotencyConflict(
                f"Idempotency-Key {key!r} was already used in project {project_id!r} "
                "with a different request body"
            )
        seconds = await self.estimator.seconds(tier=existing["tier"], domain=existing["domain"])
        return Submitted(existing, existing["created_at"] + timedelta(seconds=seconds), replayed=True)

    async def get(self, task_id: uuid.UUID, *, project_ids: Sequence[str] | None = None) -> TaskView:
        found = await self.storage.task_hot_paths.status(task_id)
        if found is None or (project_ids is not None and found.task["project_id"] not in project_ids):
            raise NotFound(f"task {task_id} does not exist")
        if not (found.has_children or found.has_deps):
            return TaskView(found.task, (), {})
        async with self.storage.read() as uow:
            subtasks = await uow.tasks.subtasks(task_id) if found.has_children else ()
            ids = [task_id, *(s["id"] for s in subtasks)]
            deps = await uow.tasks.dependencies_of(ids)
        return TaskView(found.task, subtasks, deps)

    async def list(
        self,
        f: TaskFilter,
        *,
        limit: int,
        offset: int = 0,
        after: tuple[datetime, uuid.UUID] | None = None,
    ) -> TaskPage:
        """A page, newest first, and the total counted up to :data:`LIST_TOTAL_CAP`."""
        async with self.storage.read() as uow:
            rows = await uow.tasks.find(f, limit=limit + 1, offset=offset, after=after)
            total = await uow.tasks.count(f, cap=LIST_TOTAL_CAP)
        return TaskPage(rows[:limit], min(total, LIST_TOTAL_CAP), total > LIST_TOTAL_CAP, len(rows) > limit)

    async def tree(self, task_id: uuid.UUID, *, project_ids: Sequence[str] | None = None) -> dict[str, Any]:
        """The task and every subtask under it, nested (``services/task_tree.py``)."""
        return await load_tree(self.storage, task_id, project_ids=project_ids)

    async def history(
        self, task_id: uuid.UUID, *, project_ids: Sequence[str] | None = None
    ) -> Sequence[HistoryRecord]:
        async with self.storage.read() as uow:
            task = await uow.tasks.get(task_id)
            if task is None or (project_ids is not None and task["project_id"] not in project_ids):
                raise NotFound(f"task {task_id} does not exist")
            return await uow.tasks.history(task_id)

    async def cancel(
        self,
        task_id: uuid.UUID,
        *,
        reason: str | None,
        cause: str = "api",
        project_ids: Sequence[str] | None = None,
    ) -> TaskRecord:
        async def once() -> TaskRecord:
            async with self.storage.transaction() as uow:
                task = await uow.tasks.get(task_id, for_update=True)
                if task is None or (project_ids is not None and task["project_id"] not in project_ids):
                    raise NotFound(f"task {task_id} does not exist")
                try:
                    return await self.lifecycle.cancel(
                        uow, task, reason=reason or "cancelled by request", cause=cause
                    )
                except IllegalTransition as exc:
                    raise InvalidTransition(f"cannot cancel task {task_id}: {exc}") from None

        # Cancelling locks the task, then its subtasks; a subtask's event locks the subtask,
        # then this task: the two can deadlock, and the loser runs again.
        return await retry_conflicts(once, what=f"cancel {task_id}")

    async def retry(
        self, task_id: uuid.UUID, *, requested_by: str, project_ids: Sequence[str] | None = None
    ) -> TaskRecord:
        """Run a failed or cancelled task again (a decomposed one: its failed and cancelled
        subtasks); InvalidTransition (409) for a task in any other state."""

        async def once() -> TaskRecord:
            async with self.storage.transaction() as uow:
                task = await uow.tasks.get(task_id, for_update=True)
                if task is None or (project_ids is not None and task["project_id"] not in project_ids):
                    raise NotFound(f"task {task_id} does not exist")
                try:
                    return await self.lifecycle.retry_by_hand(uow, task, requested_by=requested_by)
                except IllegalTransition as exc:
                    raise InvalidTransition(
                        f"cannot retry task {task_id}: it is {exc.current.value}; "
                        "only a failed or cancelled task can be retried"
                    ) from None

        # Like cancel: the task, then its subtasks, are locked; a subtask's event locks the
        # other way round, and the loser of such a deadlock runs again.
        return await retry_conflicts(once, what=f"retry {task_id}")
