"""The lifecycle's primitive: a transition (or a note) written with its history row and
its events, in the caller's unit of work."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from orchestration_service import tracing
from orchestration_service.config import Settings
from orchestration_service.domain import events as ev
from orchestration_service.domain.lifecycle import FINAL_STATES, TaskStatus, check_transition
from orchestration_service.domain.tasks import HistoryRecord, TaskRecord, with_values
from orchestration_service.repositories.ports import UnitOfWork
from orchestration_service.services.lifecycle import payloads


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Step:
    """One transition for ``Lifecycle.transition_many``."""

    task: TaskRecord
    to: TaskStatus
    reason: str
    cause: str
    changes: dict[str, Any] | None = None
    details: dict[str, Any] | None = None
    events: Sequence[ev.OutgoingEvent] = ()


class Transitions:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Called with (from, to) for every transition once its transaction commits (metrics).
        self.on_transition: list[Callable[[str | None, str], None]] = []
        # Set by the container to the dispatcher's: a final state freed a slot in this project.
        # Unset (tests of the lifecycle alone), the project is dispatched in the transaction.
        self.on_slot_freed: Callable[[str], None] | None = None

    async def transition(
        self,
        uow: UnitOfWork,
        task: TaskRecord,
        to: TaskStatus,
        *,
        reason: str,
        cause: str,
        changes: dict[str, Any] | None = None,
        details: dict[str, Any] | None = None,
        events: Sequence[ev.OutgoingEvent] = (),
        now: datetime | None = None,
    ) -> TaskRecord:
        """Move ``task`` to ``to`` if a rule allows it; raise IllegalTransition otherwise."""
        step = Step(task, to, reason=reason, cause=cause, changes=changes, details=details, events=events)
        (updated,) = await self.transition_many(uow, [step], now=now)
        return updated

    async def transition_many(
        self, uow: UnitOfWork, steps: Sequence[Step], *, now: datetime | None = None
    ) -> list[TaskRecord]:
        """Several transitions written together: the rows, their history and their events
        (one statement where the backend can). Every rule is checked before anything is
        written."""
        for step in steps:
            check_transition(TaskStatus(step.task["status"]), step.to)
        now = now or utcnow()
        updates: list[tuple[uuid.UUID, dict[str, Any]]] = []
        history: list[HistoryRecord] = []
        out: list[ev.OutgoingEvent] = []
        results: list[TaskRecord] = []
        for step in steps:
            task, to = step.task, step.to
            current = task["status"]
            values = dict(step.changes or {})
            values["status"] = to.value
            values["updated_at"] = now
            if to in FINAL_STATES:
                values.setdefault("completed_at", now)
                values["deadline_at"] = None
            updated = with_values(task, values)
            # Work with no request or event behind it (dispatcher, sweeper) joins the task's
            # own trace: its events carry that span's context.
            parent = None if tracing.has_active_span() else task.get("traceparent")
            with tracing.span(
                f"task {to.value}", parent_traceparent=parent, attributes={"task.id": str(task["id"])}
            ):
                events = [*step.events, payloads.status_changed(updated, current, to.value, step.reason, now)]
                stamp_trace(events)
            updates.append((task["id"], values))
            history.append(
                history_row(updated, current, to.value, step.reason, step.cause, step.details, now)
            )
            out.extend(events)
            results.append(updated)
            self._after_commit_notify(uow, current, to.value)
            if current == TaskStatus.AWAITING_REVIEW and to != TaskStatus.AWAITING_REVIEW:
                # Whatever moved it (a cancel, a worker's failure), the review is over; a
                # decision closes its review before the move, so finds none open here.
                await uow.reviews.close_open([task["id"]], reason=step.reason, at=now)
        await uow.tasks.write_transition(updates, history, out, now)
        return results

    async def note(
        self,
        uow: UnitOfWork,
        task: TaskRecord,
        *,
        reason: str,
        cause: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        """A history entry that is not a transition (an ignored event, a routing decision)."""
        await self.notes(uow, [(task, reason, cause, details)])

    async def notes(
        self, uow: UnitOfWork, entries: Sequence[tuple[TaskRecord, str, str, dict[str, Any] | None]]
    ) -> None:
        """``note`` for several (task, reason, cause, details), in one insert."""
        now = utcnow()
        await uow.tasks.add_history(
            [self.note_row(task, reason, cause, details, now) for task, reason, cause, details in entries]
        )

    def note_row(
        self, task: TaskRecord, reason: str, cause: str, details: dict[str, Any] | None, now: datetime
    ) -> HistoryRecord:
        """The history row of a note."""
        status = task["status"]
        return history_row(task, status, status, reason, cause, details, now)

    def _after_commit_notify(self, uow: UnitOfWork, from_state: str | None, to_state: str) -> None:
        for hook in self.on_transition:
            uow.after_commit(functools.partial(hook, from_state, to_state))

    def committed(self, from_state: str | None, to_state: str) -> None:
        """Run the transition hooks for a change committed outside a unit of work."""
        for hook in self.on_transition:
            hook(from_state, to_state)


def history_row(
    task: TaskRecord,
    from_status: str | None,
    to_status: str,
    reason: str,
    cause: str,
    details: dict[str, Any] | None,
    now: datetime,
) -> HistoryRecord:
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


async def emit(uow: UnitOfWork, events: Sequence[ev.OutgoingEvent]) -> None:
    """Write events to the outbox in this unit of work; the relay sends them after commit."""
    if events:
        stamp_trace(events)
        await uow.outbox.add(events)


def stamp_trace(events: Sequence[ev.OutgoingEvent]) -> None:
    """Events carry the trace of the span that caused them."""
    traceparent = tracing.current_traceparent()
    if traceparent:
        for event in events:
            if event.traceparent is None:
                event.traceparent = traceparent
