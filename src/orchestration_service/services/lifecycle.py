"""Lifecycle steps: the state changes every entry point shares.

Each step runs inside a caller's transaction (:class:`Transaction`) and writes, together,
the task row, its history row and its outgoing events (the outbox). Use cases in
``task_manager`` and the event handlers open the transaction; these steps never commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import RowMapping

from orchestration_service.config import Settings
from orchestration_service.db.engine import Transaction
from orchestration_service.domain import events as ev
from orchestration_service.domain.lifecycle import (
    FINAL_STATES,
    IN_FLIGHT_STATES,
    TaskStatus,
    check_transition,
)
from orchestration_service.repositories.outbox import OutboxRepository
from orchestration_service.repositories.tasks import TaskRepository


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Change:
    """What one step did, for callers that report it (HTTP answers, metrics)."""

    task: dict[str, Any]
    transitions: list[tuple[str | None, str]] = field(default_factory=list)


class Lifecycle:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # -- primitives --------------------------------------------------------------------
    async def transition(
        self,
        tx: Transaction,
        task: dict[str, Any],
        to: TaskStatus,
        *,
        reason: str,
        cause: str,
        changes: dict[str, Any] | None = None,
        details: dict[str, Any] | None = None,
        events: Sequence[ev.OutgoingEvent] = (),
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """Move ``task`` to ``to`` if a rule allows it; raise IllegalTransition otherwise."""
        current = TaskStatus(task["status"])
        check_transition(current, to)
        now = now or utcnow()
        values = dict(changes or {})
        values["status"] = to.value
        values["updated_at"] = now
        if to in FINAL_STATES:
            values.setdefault("completed_at", now)
            values["deadline_at"] = None
        await TaskRepository(tx.conn).update(task["id"], values)
        updated = {**task, **values}
        await TaskRepository(tx.conn).add_history(
            [self._history_row(updated, current.value, to.value, reason, cause, details, now)]
        )
        await emit(tx, [*events, self._status_event(updated, current.value, to.value, reason, now)])
        return updated

    async def note(
        self,
        tx: Transaction,
        task: dict[str, Any],
        *,
        reason: str,
        cause: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        """A history entry that is not a transition (an ignored event, a routing decision)."""
        status = task["status"]
        await TaskRepository(tx.conn).add_history(
            [self._history_row(task, status, status, reason, cause, details, utcnow())]
        )

    @staticmethod
    def _history_row(
        task: dict[str, Any],
        from_status: str | None,
        to_status: str,
        reason: str,
        cause: str,
        details: dict[str, Any] | None,
        now: datetime,
    ) -> dict[str, Any]:
        return {
            "task_id": task["id"],
            "from_status": from_status,
            "to_status": to_status,
            "reason": reason,
            "cause": cause[:255],
            "attempt": task.get("attempt"),
            "details": details,
            "created_at": now,
        }

    @staticmethod
    def _status_event(
        task: dict[str, Any], from_status: str | None, to_status: str, reason: str, now: datetime
    ) -> ev.OutgoingEvent:
        return ev.OutgoingEvent(
            name=ev.TASK_STATUS_PREFIX + to_status,
            subject=str(task["id"]),
            project_id=task["project_id"],
            data={
                "task_id": str(task["id"]),
                "project_id": task["project_id"],
                "parent_id": str(task["parent_id"]) if task.get("parent_id") else None,
                "from": from_status,
                "to": to_status,
                "reason": reason,
                "attempt": task.get("attempt", 0),
                "time": now.isoformat().replace("+00:00", "Z"),
            },
        )

    # -- creation ----------------------------------------------------------------------
    async def create(self, tx: Transaction, rows: list[dict[str, Any]], *, cause: str) -> None:
        """Insert new pending tasks with their first history row and their events."""
        repo = TaskRepository(tx.conn)
        await repo.insert_many(rows)
        now = rows[0]["created_at"] if rows else utcnow()
        await repo.add_history(
            [
                self._history_row(r, None, TaskStatus.PENDING.value, "submitted", cause, None, now)
                for r in rows
            ]
        )
        out: list[ev.OutgoingEvent] = []
        for r in rows:
            out.append(
                ev.OutgoingEvent(
                    name=ev.TASK_CREATED,
                    subject=str(r["id"]),
                    project_id=r["project_id"],
                    data={
                        "task_id": str(r["id"]),
                        "project_id": r["project_id"],
                        "description": r["description"],
                        "priority": r["priority"],
                        "parent_id": str(r["parent_id"]) if r.get("parent_id") else None,
                    },
                )
            )
            out.append(self._status_event(r, None, TaskStatus.PENDING.value, "submitted", now))
        await emit(tx, out)

    # -- dispatching -------------------------------------------------------------------
    async def dispatch_project(self, tx: Transaction, project_id: str) -> list[dict[str, Any]]:
        """Dispatch as many waiting tasks of a project as its limit allows.

        The project lock makes the count-then-dispatch atomic across replicas, so the
        limit holds under races."""
        repo = TaskRepository(tx.conn)
        await repo.lock_project(project_id)
        limit = self.settings.task_management.max_concurrent_per_project
        free = limit - await repo.in_flight_count(project_id)
        if free <= 0:
            return []
        dispatched = []
        for row in await repo.dispatchable(project_id, free):
            dispatched.append(
                await self._start_attempt(tx, dict(row), reason="dispatched", cause="dispatcher")
            )
        return dispatched

    async def _start_attempt(
        self,
        tx: Transaction,
        task: dict[str, Any],
        *,
        reason: str,
        cause: str,
        feedback: Any = None,
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        now = utcnow()
        attempt = int(task["attempt"]) + 1
        deadline = now + timedelta(seconds=int(task["timeout_seconds"]))
        tier = task["tier"] or "small"
        inputs = await self._dependency_inputs(tx, task)
        context = dict(task.get("context") or {})
        if inputs:
            context["inputs"] = inputs
        ready = ev.OutgoingEvent(
            name=ev.TASK_READY_PREFIX + tier,
            subject=str(task["id"]),
            project_id=task["project_id"],
            data={
                "task_id": str(task["id"]),
                "project_id": task["project_id"],
                "description": task["description"],
                "domain": task["domain"],
                "tier": tier,
                "mode": task["mode"],
                "qa_profile": task["qa_profile"],
                "attempt": attempt,
                "context": context,
                "feedback": feedback,
                "deadline": deadline.isoformat().replace("+00:00", "Z"),
            },
        )
        changes: dict[str, Any] = {
            "attempt": attempt,
            "dispatched_at": now,
            "deadline_at": deadline,
            "feedback": feedback,
        }
        if task.get("started_at") is None:
            changes["started_at"] = now
        task = {**task, "attempt": attempt}
        return await self.transition(
            tx,
            task,
            TaskStatus.RUNNING,
            reason=reason,
            cause=cause,
            changes=changes,
            details=details,
            events=[ready],
            now=now,
        )

    async def _dependency_inputs(self, tx: Transaction, task: dict[str, Any]) -> list[dict[str, Any]]:
        """The artifacts of the tasks this one depends on: its consumed inputs."""
        repo = TaskRepository(tx.conn)
        deps = (await repo.dependencies_of([task["id"]])).get(task["id"], [])
        inputs: list[dict[str, Any]] = []
        for dep_id in deps:
            dep = await repo.get(dep_id)
            if dep is None:
                continue
            for art in dep["artifacts"] or []:
                inputs.append(
                    {
                        "artifact_id": art.get("id"),
                        "task_id": str(dep_id),
                        "provenance_id": str(dep["provenance_id"]) if dep["provenance_id"] else None,
                        "relationship": "consumed",
                        "type": art.get("type"),
                        "path": art.get("path") or art.get("location"),
                    }
                )
        return inputs

    # -- leaving flight ----------------------------------------------------------------
    async def retry_or_fail(
        self,
        tx: Transaction,
        task: dict[str, Any],
        *,
        reason: str,
        cause: str,
        error: Any,
        feedback: Any = None,
        retry: bool = True,
        publish_failure: bool = True,
    ) -> dict[str, Any]:
        """Start another attempt if attempts remain (and ``retry``); otherwise fail."""
        if retry and int(task["attempt"]) < int(task["max_attempts"]):
            return await self._start_attempt(
                tx,
                task,
                reason=f"retry after {reason}",
                cause=cause,
                feedback=feedback,
                details={"error": error} if error is not None else None,
            )
        return await self.fail(tx, task, reason=reason, cause=cause, error=error, publish=publish_failure)

    async def fail(
        self, tx: Transaction, task: dict[str, Any], *, reason: str, cause: str, error: Any, publish: bool
    ) -> dict[str, Any]:
        events = []
        if publish:
            # Only failures this service decides are announced as task.failed; a worker's
            # own task.failed was already on the bus.
            events.append(
                ev.OutgoingEvent(
                    name=ev.TASK_FAILED,
                    subject=str(task["id"]),
                    project_id=task["project_id"],
                    data={
                        "task_id": str(task["id"]),
                        "project_id": task["project_id"],
                        "error": error,
                        "reason": reason,
                    },
                )
            )
        failed = await self.transition(
            tx,
            task,
            TaskStatus.FAILED,
            reason=reason,
            cause=cause,
            changes={"error": {"reason": reason, "detail": error}},
            events=events,
        )
        await self.after_final(tx, failed)
        return failed

    async def cancel(
        self, tx: Transaction, task: dict[str, Any], *, reason: str, cause: str
    ) -> dict[str, Any]:
        cancelled = await self.transition(
            tx,
            task,
            TaskStatus.CANCELLED,
            reason=reason,
            cause=cause,
            events=[
                ev.OutgoingEvent(
                    name=ev.TASK_CANCELLED,
                    subject=str(task["id"]),
                    project_id=task["project_id"],
                    data={"task_id": str(task["id"]), "project_id": task["project_id"], "reason": reason},
                )
            ],
        )
        repo = TaskRepository(tx.conn)
        for child in await repo.subtasks(task["id"]):
            if TaskStatus(child["status"]) not in FINAL_STATES:
                row = await repo.get(child["id"], for_update=True)
                if row is not None and TaskStatus(row["status"]) not in FINAL_STATES:
                    await self.cancel(tx, dict(row), reason=f"parent cancelled: {reason}", cause=cause)
        await self.after_final(tx, cancelled)
        return cancelled

    async def after_final(self, tx: Transaction, task: dict[str, Any]) -> None:
        """A task reached a final state: free its slot and settle its parent."""
        await self.dispatch_project(tx, task["project_id"])
        if task.get("parent_id"):
            await self._settle_parent(tx, task)

    async def _settle_parent(self, tx: Transaction, child: dict[str, Any]) -> None:
        repo = TaskRepository(tx.conn)
        parent_row = await repo.get(child["parent_id"], for_update=True)
        if parent_row is None or TaskStatus(parent_row["status"]) != TaskStatus.DECOMPOSING:
            return
        parent = dict(parent_row)
        status = TaskStatus(child["status"])
        if status == TaskStatus.FAILED:
            await self.fail(
                tx,
                parent,
                reason="subtask failed",
                cause=f"subtask:{child['id']}",
                error={"subtask_id": str(child["id"]), "error": child.get("error")},
                publish=True,
            )
            return
        siblings = await repo.subtasks(parent["id"])
        if all(TaskStatus(s["status"]) == TaskStatus.COMPLETED for s in siblings):
            await self.complete_parent(tx, parent, siblings)
        elif status == TaskStatus.COMPLETED:
            # A finished child may unblock siblings that depended on it.
            await self.dispatch_project(tx, parent["project_id"])

    async def complete_parent(
        self, tx: Transaction, parent: dict[str, Any], children: Sequence[RowMapping]
    ) -> None:
        repo = TaskRepository(tx.conn)
        artifacts: list[dict[str, Any]] = []
        for c in children:
            row = await repo.get(c["id"])
            if row is not None:
                artifacts.extend(row["artifacts"] or [])
        now = utcnow()
        started = parent.get("started_at") or parent["created_at"]
        done = await self.transition(
            tx,
            parent,
            TaskStatus.COMPLETED,
            reason="all subtasks completed",
            cause="subtasks",
            changes={
                "artifacts": artifacts,
                "execution_time_ms": int((now - started).total_seconds() * 1000),
            },
            events=[
                ev.OutgoingEvent(
                    name=ev.TASK_COMPLETED,
                    subject=str(parent["id"]),
                    project_id=parent["project_id"],
                    data={
                        "task_id": str(parent["id"]),
                        "project_id": parent["project_id"],
                        "provenance_id": None,
                        "artifacts": artifacts,
                    },
                )
            ],
            now=now,
        )
        await self.after_final(tx, done)


async def emit(tx: Transaction, events: Sequence[ev.OutgoingEvent]) -> None:
    """Write events to the outbox in this transaction; the relay sends them after commit."""
    if events:
        await OutboxRepository(tx.conn).add(events)
        await tx.mark_outbox_written()


def was_in_flight(task: dict[str, Any]) -> bool:
    return TaskStatus(task["status"]) in IN_FLIGHT_STATES


def task_uuid(value: Any) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
