"""A task and its history entries as typed records: every layer reads a task's fields by
these names (the columns of ``db.tables.tasks`` and ``task_history``)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NotRequired, TypedDict, cast


class TaskRecord(TypedDict, total=False):
    """A task as stored (``db.tables.tasks``), field by field.

    A typed dict, not a dataclass: the hot paths hand rows from the driver straight on (no
    copy into objects), the lifecycle merges changes into them, and a partial read (a
    subtask's summary, the oldest waiting task) is the same record with fewer fields."""

    id: uuid.UUID
    project_id: str
    description: str
    priority: str
    priority_rank: int
    status: str
    mode: str | None
    domain: str | None
    tier: str | None
    qa_profile: str | None
    options: dict[str, Any]
    attempt: int
    max_attempts: int
    timeout_seconds: int
    parent_id: uuid.UUID | None
    depth: int
    idempotency_key: str | None
    request_hash: str | None
    routed_at: datetime | None
    routing_claimed_until: datetime | None
    routing: dict[str, Any] | None
    context: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    dispatched_at: datetime | None
    deadline_at: datetime | None
    completed_at: datetime | None
    execution_time_ms: int | None
    artifacts: list[dict[str, Any]] | None
    output: dict[str, Any] | None
    metrics: dict[str, Any] | None
    feedback: Any
    error: Any
    provenance_id: uuid.UUID | None
    traceparent: str | None
    progress: dict[str, Any] | None
    progress_at: datetime | None
    heartbeat_seconds: int | None
    heartbeat_due_at: datetime | None


class HistoryRecord(TypedDict):
    """One entry of a task's history (``db.tables.task_history``); ``id`` once stored."""

    id: NotRequired[int]
    task_id: uuid.UUID
    from_status: str | None
    to_status: str
    reason: str
    cause: str
    attempt: int | None
    details: dict[str, Any] | None
    created_at: datetime


def with_values(task: TaskRecord, values: Mapping[str, Any]) -> TaskRecord:
    """The task with these columns changed (a new record; ``task`` is left as it was)."""
    return cast(TaskRecord, {**task, **values})


def as_task(row: Mapping[Any, Any]) -> TaskRecord:
    """A row read from storage as a task record (the columns are the record's fields)."""
    return cast(TaskRecord, dict(row))
