"""Task rows for the repository suite, as the use cases make them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from orchestration_service.domain.events import OutgoingEvent
from orchestration_service.domain.ids import uuid7
from orchestration_service.repositories.tasks import HistoryRecord, TaskRecord

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_OPTIONAL = (
    "mode",
    "progress",
    "progress_at",
    "heartbeat_seconds",
    "heartbeat_due_at",
    "routed_at",
    "routing_claimed_until",
    "routing",
    "context",
    "started_at",
    "dispatched_at",
    "deadline_at",
    "completed_at",
    "execution_time_ms",
    "artifacts",
    "output",
    "metrics",
    "feedback",
    "error",
    "provenance_id",
)


def task(n: int = 0, *, project_id: str = "p1", **values: Any) -> TaskRecord:
    """A pending, unrouted task created ``n`` seconds after ``T0``."""
    at = T0 + timedelta(seconds=n)
    row: TaskRecord = {
        "id": uuid7(),
        "project_id": project_id,
        "description": f"task {n}",
        "priority": "normal",
        "priority_rank": 2,
        "status": "pending",
        "domain": None,
        "tier": None,
        "qa_profile": None,
        "options": {"n": n},
        "attempt": 0,
        "max_attempts": 3,
        "timeout_seconds": 60,
        "parent_id": None,
        "depth": 0,
        "idempotency_key": None,
        "request_hash": None,
        "traceparent": None,
        "created_at": at,
        "updated_at": at,
    }
    # Every row with every column: an insert of several rows takes its columns from the first.
    row.update(dict.fromkeys(_OPTIONAL))
    row.update(values)
    return row


def routed(n: int = 0, **values: Any) -> TaskRecord:
    """A pending task routed and waiting for a slot."""
    return task(n, routed_at=T0 + timedelta(seconds=n), tier="small", mode="single", **values)


def history(
    t: TaskRecord, reason: str = "submitted", *, to: str = "pending", at: datetime | None = None
) -> HistoryRecord:
    return {
        "task_id": t["id"],
        "from_status": None,
        "to_status": to,
        "reason": reason,
        "cause": "test",
        "attempt": t["attempt"],
        "details": {"why": reason},
        "created_at": at or t["created_at"],
    }


def event(t: TaskRecord, name: str = "task.created") -> OutgoingEvent:
    return OutgoingEvent(
        name=name, data={"task_id": str(t["id"])}, subject=str(t["id"]), project_id=t["project_id"]
    )


def some_id() -> uuid.UUID:
    return uuid.uuid4()
