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
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import cast

from orchestration_service.domain.errors import EventRejected
from orchestration_service.domain.ids import parse_uuid
from orchestration_service.domain.lifecycle import TaskStatus, takes_progress
from orchestration_service.repositories.ports import Storage
from orchestration_service.repositories.tasks.port import ProgressReport
from orchestration_service.schemas.events import TaskProgress
from orchestration_service.services.lifecycle import utcnow

log = logging.getLogger(__name__)


Outcome = tuple[str, str] | EventRejected  # (outcome, detail), or why the report is rejected


class ProgressRecorder:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def record(
        self, p: TaskProgress, *, at: datetime | None, projects: Collection[str] | None
    ) -> tuple[str, str]:
        """(outcome, detail): ``processed`` when kept, ``ignored`` otherwise. Raises
        EventRejected for a task that does not exist (or outside ``projects``)."""
        now = utcnow()
        report = _report(p, at, now, projects)
        # The hot path: concurrent reports share one statement where the backend can.
        if report is not None and await self.storage.task_hot_paths.record_progress(report, now):
            return "processed", "progress kept"
        outcome = (await self._not_kept([(p, report)], projects))[0]
        if isinstance(outcome, EventRejected):
            raise outcome
        return outcome

    async def record_many(self, reports: Sequence[tuple[TaskProgress, datetime | None]]) -> list[Outcome]:
        """``record`` of reports that arrived together from a trusted sender (the broker), one
        outcome each. Of the reports of one (task, attempt) only the latest is written: the
        others are answered as it is (``ignored`` when it is kept: a later one is)."""
        now = utcnow()
        built = [_report(p, at, now, None) for p, at in reports]
        latest: dict[tuple[uuid.UUID, int | None], int] = {}
        for i, r in enumerate(built):
            if r is not None:
                key = (r.task_id, r.attempt)
                j = latest.get(key)
                if j is None or cast(ProgressReport, built[j]).at <= r.at:
                    latest[key] = i
        written = sorted(latest.values())
        # A task at most once per call: reports of two attempts of one task go one after the other.
        kept: dict[int, bool] = {}
        pending = written
        while pending:
            seen: set[uuid.UUID] = set()
            now_batch: list[int] = []
            later: list[int] = []
            for i in pending:
                task_id = cast(ProgressReport, built[i]).task_id
                (later if task_id in seen else now_batch).append(i)
                seen.add(task_id)
            done = await self.storage.task_hot_paths.record_progress_many(
                [cast(ProgressReport, built[i]) for i in now_batch], now
            )
            kept.update(zip(now_batch, done, strict=True))
            pending = later
        losers = [i for i in written if not kept[i]] + [i for i, r in enumerate(built) if r is None]
        why = dict(
            zip(losers, await self._not_kept([(reports[i][0], built[i]) for i in losers], None), strict=True)
        )
        out: list[Outcome] = []
        for i, r in enumerate(built):
            if r is None or i in why:
                out.append(why[i])
                continue
            winner = latest[(r.task_id, r.attempt)]
            if winner == i:
                out.append(("processed", "progress kept"))
            elif kept[winner]:
                out.append(("ignored", "a later report is already kept"))
            else:
                out.append(why[winner])
        return out

    async def _not_kept(
        self, reports: Sequence[tuple[TaskProgress, ProgressReport | None]], projects: Collection[str] | None
    ) -> list[Outcome]:
        """Why each report was not kept: ignored (with the reason) or rejected (no such task)."""
        if not reports:
            return []
        out: list[Outcome] = []
        async with self.storage.read() as uow:
            for p, report in reports:
                task = None if report is None else await uow.tasks.get(report.task_id)
                if task is not None and (projects is None or task["project_id"] in projects):
                    why = _why_ignored(task["status"], int(task["attempt"]), p.attempt)
                    log.debug("task.progress ignored", extra={"task_id": p.task_id, "why": why})
                    out.append(("ignored", why))
                else:
                    text = f"task {p.task_id} does not exist"
                    out.append(EventRejected("unknown-task", text, field="data.task_id"))
        return out


def _report(
    p: TaskProgress, at: datetime | None, now: datetime, projects: Collection[str] | None
) -> ProgressReport | None:
    """The report as the task keeps it; None when its task id is not a task's."""
    task_id = parse_uuid(p.task_id)
    if task_id is None:
        return None
    # A sender's clock ahead of ours must not hide its later reports: no time past now.
    at = now if at is None else min(_utc(at), now)
    return ProgressReport(
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


def _why_ignored(status: str, current: int, reported: int | None) -> str:
    if not takes_progress(TaskStatus(status)):
        return f"task is {status}"
    if reported is not None and reported != current:
        return f"attempt {reported} is not the current attempt ({current})"
    return "a later report is already kept"


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
