"""Heartbeats: a worker's ``task.progress`` kept on its task.

A report is idempotent (the latest wins, decided by its time and attempt), so it is not
claimed in ``processed_events``: a redelivered report finds a later or equal one kept and
changes nothing, and skipping the claim saves an insert per heartbeat (and a table that
would grow by every heartbeat). It writes no history row and no outbox event: one UPDATE,
shared on PostgreSQL by the reports that arrive together (``storage.task_hot_paths``).
A report for an attempt that is no longer current, or for a task not running (final ones
included), is ignored; one naming no task the sender may see is rejected like any event.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection
from datetime import UTC, datetime

from orchestration_service.domain.errors import EventRejected
from orchestration_service.domain.lifecycle import TaskStatus, takes_progress
from orchestration_service.repositories.ports import Storage
from orchestration_service.repositories.tasks.port import ProgressReport
from orchestration_service.schemas.events import TaskProgress
from orchestration_service.services.lifecycle import utcnow

log = logging.getLogger(__name__)


class ProgressRecorder:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def record(
        self, p: TaskProgress, *, at: datetime | None, projects: Collection[str] | None
    ) -> tuple[str, str]:
        """(outcome, detail): ``processed`` when kept, ``ignored`` otherwise. Raises
        EventRejected for a task that does not exist (or outside ``projects``)."""
        task_id = _uuid(p.task_id)
        now = utcnow()
        # A sender's clock ahead of ours must not hide its later reports: no time past now.
        at = now if at is None else min(_utc(at), now)
        if task_id is not None:
            report = ProgressReport(
                task_id=task_id,
                attempt=p.attempt,
                progress={
                    "value": p.progress,
                    "message": p.message,
                    "worker_id": p.worker_id,
                    "attempt": p.attempt,
                    "at": at.isoformat().replace("+00:00", "Z"),
                },
                at=at,
                project_ids=None if projects is None else list(projects),
            )
            # The hot path: concurrent reports share one statement where the backend can.
            if await self.storage.task_hot_paths.record_progress(report, now):
                return "processed", "progress kept"
            async with self.storage.read() as uow:
                task = await uow.tasks.get(task_id)
            if task is not None and (projects is None or task["project_id"] in projects):
                why = _why_ignored(task["status"], int(task["attempt"]), p.attempt)
                log.debug("task.progress ignored", extra={"task_id": p.task_id, "why": why})
                return "ignored", why
        raise EventRejected("unknown-task", f"task {p.task_id} does not exist", field="data.task_id")


def _why_ignored(status: str, current: int, reported: int | None) -> str:
    if not takes_progress(TaskStatus(status)):
        return f"task is {status}"
    if reported is not None and reported != current:
        return f"attempt {reported} is not the current attempt ({current})"
    return "a later report is already kept"


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None
