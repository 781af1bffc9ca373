"""What the use cases may ask of the task store: tasks, their history and dependencies,
the dispatch queues, and the two hot paths (submission, status read) that run outside a
unit of work."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from orchestration_service.domain.events import OutgoingEvent
from orchestration_service.domain.tasks import HistoryRecord as HistoryRecord
from orchestration_service.domain.tasks import TaskRecord as TaskRecord
from orchestration_service.repositories.projects.port import ProjectRecord


@dataclass(frozen=True, slots=True)
class TaskFilter:
    project_ids: Sequence[str] | None = None  # None = every project
    statuses: Sequence[str] = ()
    priority: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    parent_id: uuid.UUID | None = None


@dataclass(slots=True)
class Submission:
    """A new task's rows, as ``Lifecycle.creation_records`` makes them."""

    task: TaskRecord
    history: Sequence[HistoryRecord]
    events: Sequence[OutgoingEvent]
    # The first task of a project this process has not seen: its row is written too, in the
    # same statement, unless one exists (``projects.auto_create``).
    new_project: bool = False


@dataclass(frozen=True, slots=True)
class StatusRead:
    """A task, and whether it has subtasks or dependencies (then the caller reads those)."""

    task: TaskRecord
    has_children: bool
    has_deps: bool


@dataclass(frozen=True, slots=True)
class ProgressReport:
    """A worker's ``task.progress``, as the task keeps it."""

    task_id: uuid.UUID
    attempt: int | None
    progress: dict[str, Any]  # value, message, worker_id, attempt, at (the task document's)
    at: datetime
    project_ids: Sequence[str] | None = None  # None = any project


@dataclass(frozen=True, slots=True)
class EventClaim:
    """A consumed event claimed under its task's project, with the task locked."""

    claimed: bool  # False: the project has seen this event id (a duplicate)
    task: TaskRecord | None  # None: no such task (and nothing claimed)


class TaskRepository(Protocol):
    # -- single rows -------------------------------------------------------------------
    async def insert_many(self, rows: Sequence[TaskRecord]) -> None: ...

    async def get(self, task_id: uuid.UUID, *, for_update: bool = False) -> TaskRecord | None:
        """``for_update``: locked until the unit of work ends (where the backend locks rows)."""
        ...

    async def get_with_flags(self, task_id: uuid.UUID) -> StatusRead | None:
        """The task and whether it has subtasks and dependencies, in one statement."""
        ...

    async def get_by_idempotency_key(self, project_id: str, key: str) -> TaskRecord | None: ...

    async def get_many(self, task_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, TaskRecord]: ...

    async def update(self, task_id: uuid.UUID, values: dict[str, Any]) -> None: ...

    async def update_many(self, changes: Sequence[tuple[uuid.UUID, dict[str, Any]]]) -> None:
        """Several rows, each with its own values."""
        ...

    async def write_transition(
        self,
        updates: Sequence[tuple[uuid.UUID, dict[str, Any]]],
        history: Sequence[HistoryRecord],
        events: Sequence[OutgoingEvent],
        now: datetime,
    ) -> None:
        """Tasks' new values, their history rows and their outbox events, together (one
        statement where the backend can)."""
        ...

    async def claim_event_and_lock(
        self, *, event_id: str, event_type: str, source: str | None, outcome: str, task_id: uuid.UUID
    ) -> EventClaim:
        """Read and lock the task, and claim the event for idempotency under the task's
        project; no task, no claim."""
        ...

    # -- history and dependencies ------------------------------------------------------
    async def add_history(self, rows: Sequence[HistoryRecord]) -> None: ...

    async def history(self, task_id: uuid.UUID) -> Sequence[HistoryRecord]:
        """Oldest first."""
        ...

    async def subtasks(self, parent_id: uuid.UUID) -> Sequence[TaskRecord]:
        """id, status, description, tier, domain, created_at, completed_at; oldest first."""
        ...

    async def descendants(self, task_id: uuid.UUID, *, limit: int) -> Sequence[TaskRecord]:
        """Every subtask under ``task_id``, all levels: id, parent_id, project_id, status,
        description, depth, created_at; shallowest first, then oldest; at most ``limit``."""
        ...

    async def dependencies_of(self, task_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[uuid.UUID]]: ...

    async def add_dependencies(self, rows: Sequence[dict[str, uuid.UUID]]) -> None:
        """Rows of task_id, depends_on_id."""
        ...

    # -- lists and counts --------------------------------------------------------------
    async def find(
        self, f: TaskFilter, *, limit: int, offset: int = 0, after: tuple[datetime, uuid.UUID] | None = None
    ) -> Sequence[TaskRecord]:
        """Newest first; ``after`` (the last row of the previous page) is the keyset cursor."""
        ...

    async def count(self, f: TaskFilter, *, cap: int | None = None) -> int:
        """How many match, counting no further than ``cap`` + 1."""
        ...

    async def counts_by_status(self, project_ids: Sequence[str] | None) -> dict[str, dict[str, int]]: ...

    async def counts_by_state(self) -> dict[str, int]: ...

    async def oldest_waiting(self, project_id: str) -> TaskRecord | None:
        """id, created_at, priority of the project's oldest pending task."""
        ...

    async def recent_execution_times(self, project_id: str | None, limit: int = 100) -> list[int]: ...

    async def recent_durations(
        self, *, tier: str | None = None, domain: str | None = None, limit: int = 100
    ) -> list[float]:
        """Seconds from submission to completion of recent completed tasks of a kind."""
        ...

    # -- dispatching -------------------------------------------------------------------
    async def lock_rows(self, task_ids: Sequence[uuid.UUID]) -> None:
        """Lock these tasks' rows now, in id order."""
        ...

    async def lock_projects(self, project_ids: Sequence[str]) -> None:
        """Serialise dispatch decisions of these projects across replicas, in a fixed order."""
        ...

    async def with_waiting_tasks(self, project_ids: Sequence[str], per_project: int) -> list[str]:
        """The projects among these with a routed task waiting and fewer in flight than
        their limit (a project's own ``max_concurrent``, else ``per_project``), sorted."""
        ...

    async def in_flight_counts(self, project_ids: Sequence[str]) -> dict[str, int]: ...

    async def dispatchable_within(self, project_ids: Sequence[str], limit: int) -> list[TaskRecord]:
        """Each project's dispatchable tasks up to its free slots (its limit, its own
        ``max_concurrent`` else ``limit``, minus its tasks in flight). Call it after
        ``lock_projects``."""
        ...

    async def dispatchable(self, project_id: str, limit: int) -> Sequence[TaskRecord]:
        """Routed pending tasks whose dependencies have all completed, in dispatch order."""
        ...

    async def claim_unrouted(self, now: datetime, until: datetime, limit: int) -> list[TaskRecord]:
        """Lease up to ``limit`` unrouted pending tasks until ``until``, oldest first; two
        claimers never get the same task."""
        ...

    async def lock_unrouted(self, now: datetime, limit: int) -> list[TaskRecord]:
        """Unrouted pending tasks nobody leases, oldest first, locked for this unit of work."""
        ...

    async def mark_routed(self, task_id: uuid.UUID, values: dict[str, Any]) -> bool:
        """Write a routing decision if the task is still pending and unrouted."""
        ...

    async def release_claims(self, task_ids: Sequence[uuid.UUID]) -> None: ...

    async def overdue(self, now: datetime, limit: int) -> Sequence[TaskRecord]:
        """Tasks in flight past their deadline (others' locked rows skipped)."""
        ...

    async def projects_with_waiting_work(self, per_project: int, limit: int = 1000) -> list[str]:
        """Projects with a routed task waiting and a free slot (under their own
        ``max_concurrent``, else ``per_project``), at most ``limit``."""
        ...

    # -- progress and heartbeats -------------------------------------------------------
    async def progress_of(self, task_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any] | None]:
        """Each task's latest progress (None: none yet); unknown ids are left out."""
        ...

    async def record_progress(self, report: ProgressReport, now: datetime) -> bool:
        """Keep ``report`` as the task's latest progress if the task is running, in the
        report's attempt (when it names one), within ``report.project_ids``, and nothing
        later was kept; move its heartbeat due time to ``now`` plus its heartbeat seconds.
        False: nothing changed. No history row: a heartbeat is not a transition."""
        ...

    async def heartbeat_overdue(self, now: datetime, limit: int) -> Sequence[TaskRecord]:
        """Running tasks past their heartbeat due time (others' locked rows skipped)."""
        ...

    async def cancellable_since(
        self, project_id: str, after: datetime, statuses: Sequence[str]
    ) -> list[uuid.UUID]:
        """The project's tasks in ``statuses`` created or started after ``after``, parents
        first."""
        ...


class TaskHotPaths(Protocol):
    """Submission and status read, the API's most frequent calls, outside any unit of work:
    each call is its own transaction (concurrent calls may share one statement)."""

    async def submit(self, submission: Submission) -> bool:
        """Write the task, its history rows and events together; False (nothing written)
        when its Idempotency-Key is taken."""
        ...

    async def status(self, task_id: uuid.UUID) -> StatusRead | None: ...

    async def project(self, project_id: str) -> ProjectRecord | None:
        """The project a submission goes to (concurrent reads may share one statement)."""
        ...

    async def record_progress(self, report: ProgressReport, now: datetime) -> bool:
        """``TaskRepository.record_progress`` in its own transaction (concurrent reports may
        share one statement)."""
        ...

    async def record_progress_many(self, reports: Sequence[ProgressReport], now: datetime) -> list[bool]:
        """``record_progress`` of each report (of distinct tasks), one True/False each: one
        transaction on SQLite, statements shared on PostgreSQL."""
        ...
