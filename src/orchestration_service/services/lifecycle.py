"""Lifecycle steps: the state changes every entry point shares.

Each step runs inside a caller's transaction (:class:`Transaction`) and writes, together,
the task row, its history row and its outgoing events (the outbox). Use cases in
``task_manager`` and the event handlers open the transaction; these steps never commit.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import RowMapping

from orchestration_service import tracing
from orchestration_service.config import Settings
from orchestration_service.db.engine import Transaction
from orchestration_service.domain import events as ev
from orchestration_service.domain.decomposition import CheckedPlan
from orchestration_service.domain.ids import uuid7
from orchestration_service.domain.lifecycle import (
    FINAL_STATES,
    IN_FLIGHT_STATES,
    TaskStatus,
    check_transition,
)
from orchestration_service.repositories import tasks_pg
from orchestration_service.repositories.storage import unit_of_work
from orchestration_service.repositories.tasks import TaskRepository


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Change:
    """What one step did, for callers that report it (HTTP answers, metrics)."""

    task: dict[str, Any]
    transitions: list[tuple[str | None, str]] = field(default_factory=list)


@dataclass(slots=True)
class Step:
    """One transition for ``Lifecycle.transition_many``."""

    task: dict[str, Any]
    to: TaskStatus
    reason: str
    cause: str
    changes: dict[str, Any] | None = None
    details: dict[str, Any] | None = None
    events: Sequence[ev.OutgoingEvent] = ()


class Lifecycle:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Called with (from, to) for every transition once its transaction commits (metrics).
        self.on_transition: list[Callable[[str | None, str], None]] = []
        # Set by the container to the router's: a final state freed a slot in this project.
        # Unset (tests of the lifecycle alone), the project is dispatched in the transaction.
        self.on_slot_freed: Callable[[str], None] | None = None

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
        step = Step(task, to, reason=reason, cause=cause, changes=changes, details=details, events=events)
        (updated,) = await self.transition_many(tx, [step], now=now)
        return updated

    async def transition_many(
        self, tx: Transaction, steps: Sequence[Step], *, now: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Several transitions written together: one UPDATE batch, one history insert and one
        outbox insert. Every rule is checked before anything is written."""
        for step in steps:
            check_transition(TaskStatus(step.task["status"]), step.to)
        now = now or utcnow()
        updates: list[tuple[Any, dict[str, Any]]] = []
        history: list[dict[str, Any]] = []
        out: list[ev.OutgoingEvent] = []
        results: list[dict[str, Any]] = []
        for step in steps:
            task, to = step.task, step.to
            current = task["status"]
            values = dict(step.changes or {})
            values["status"] = to.value
            values["updated_at"] = now
            if to in FINAL_STATES:
                values.setdefault("completed_at", now)
                values["deadline_at"] = None
            updated = {**task, **values}
            # Work with no request or event behind it (router, sweeper) joins the task's own
            # trace: its events carry that span's context.
            parent = None if tracing.has_active_span() else task.get("traceparent")
            with tracing.span(
                f"task {to.value}", parent_traceparent=parent, attributes={"task.id": str(task["id"])}
            ):
                events = [*step.events, self._status_event(updated, current, to.value, step.reason, now)]
                stamp_trace(events)
            updates.append((task["id"], values))
            history.append(
                self._history_row(updated, current, to.value, step.reason, step.cause, step.details, now)
            )
            out.extend(events)
            results.append(updated)
            self._after_commit_notify(tx, current, to.value)
        repo = TaskRepository(tx.conn)
        if tx.is_postgres:
            driver = await tx.driver()
            # Usually one statement for everything; rows changing different columns take two.
            if not await tasks_pg.transition(driver, updates, history, out, now):
                await repo.update_many(updates)
                await tasks_pg.add_history_and_events(driver, history, out, now)
            tx.mark_outbox_written()
        else:
            await repo.update_many(updates)
            await repo.add_history(history)
            await emit(tx, out)
        return results

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
        await self.notes(tx, [(task, reason, cause, details)])

    async def notes(
        self, tx: Transaction, entries: Sequence[tuple[dict[str, Any], str, str, dict[str, Any] | None]]
    ) -> None:
        """``note`` for several (task, reason, cause, details), in one insert."""
        now = utcnow()
        await TaskRepository(tx.conn).add_history(
            [self.note_row(task, reason, cause, details, now) for task, reason, cause, details in entries]
        )

    def note_row(
        self, task: dict[str, Any], reason: str, cause: str, details: dict[str, Any] | None, now: datetime
    ) -> dict[str, Any]:
        """The history row of a note."""
        status = task["status"]
        return self._history_row(task, status, status, reason, cause, details, now)

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

    def _after_commit_notify(self, tx: Transaction, from_state: str | None, to_state: str) -> None:
        for hook in self.on_transition:
            tx.after_commit(functools.partial(hook, from_state, to_state))

    # -- creation ----------------------------------------------------------------------
    async def create(self, tx: Transaction, rows: list[dict[str, Any]], *, cause: str) -> None:
        """Insert new pending tasks with their first history row and their events."""
        repo = TaskRepository(tx.conn)
        await repo.insert_many(rows)
        history, events = self.creation_records(rows, cause=cause)
        await repo.add_history(history)
        await emit(tx, events)
        for _ in rows:
            self._after_commit_notify(tx, None, TaskStatus.PENDING.value)

    def creation_records(
        self, rows: Sequence[dict[str, Any]], *, cause: str
    ) -> tuple[list[dict[str, Any]], list[ev.OutgoingEvent]]:
        """What creating ``rows`` writes besides them: a history row each, and the events
        ``task.created`` and ``task.status.pending`` each (with the current trace)."""
        now = rows[0]["created_at"] if rows else utcnow()
        history = [
            self._history_row(r, None, TaskStatus.PENDING.value, "submitted", cause, None, now) for r in rows
        ]
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
        stamp_trace(out)
        return history, out

    def committed(self, from_state: str | None, to_state: str) -> None:
        """Run the transition hooks for a change committed outside a ``Transaction``."""
        for hook in self.on_transition:
            hook(from_state, to_state)

    # -- decomposition -----------------------------------------------------------------
    async def decompose(
        self,
        tx: Transaction,
        parent: dict[str, Any],
        plan: CheckedPlan,
        *,
        cause: str,
        details: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Create the plan's subtasks (pending, unrouted) with their dependencies and move
        the parent to ``decomposing``. The children are routed like any task, dispatched when
        their dependencies completed; the parent settles when they finish."""
        now = utcnow()
        options = {k: v for k, v in (parent.get("options") or {}).items() if k != "decompose"}
        ids = {s.id: uuid7() for s in plan.subtasks}
        rows: list[dict[str, Any]] = []
        for s in plan.subtasks:
            rows.append(
                {
                    "id": ids[s.id],
                    "project_id": parent["project_id"],
                    "description": s.description,
                    "priority": parent["priority"],
                    "priority_rank": parent["priority_rank"],
                    "status": TaskStatus.PENDING.value,
                    # Pins carry over; the rest is each child's own routing decision.
                    "domain": options.get("domain"),
                    "tier": options.get("tier"),
                    "qa_profile": options.get("qa_profile"),
                    "options": options,
                    "attempt": 0,
                    "max_attempts": parent["max_attempts"],
                    "timeout_seconds": parent["timeout_seconds"],
                    "parent_id": parent["id"],
                    "depth": plan.child_depth,
                    "context": {"subtask": {"plan_id": s.id, "is_atomic": s.is_atomic}},
                    "created_at": now,
                    "updated_at": now,
                }
            )
        await self.create(tx, rows, cause=cause)
        await TaskRepository(tx.conn).add_dependencies(
            [
                {"task_id": ids[s.id], "depends_on_id": ids[dep]}
                for s in plan.subtasks
                for dep in s.dependencies
            ]
        )
        await self.transition(
            tx,
            parent,
            TaskStatus.DECOMPOSING,
            reason=f"decomposed into {len(rows)} subtasks",
            cause=cause,
            details={
                **(details or {}),
                "subtasks": [
                    {"plan_id": s.id, "task_id": str(ids[s.id]), "depends_on": list(s.dependencies)}
                    for s in plan.subtasks
                ],
                "longest_chain": plan.longest_chain,
            },
            now=now,
        )
        return rows

    # -- dispatching -------------------------------------------------------------------
    async def slot_freed(self, tx: Transaction, project_id: str) -> None:
        """A task of the project left the running states: its next waiting task may start.

        With a router, that happens after this commit, batched with other projects' in the
        router's own transaction: the event that finished the task commits without taking the
        project lock (concurrent completions in one project queued on it). A crash in
        between leaves the task waiting for the sweeper's re-dispatch."""
        notify = self.on_slot_freed
        if notify is None:
            await self.dispatch_project(tx, project_id)
        else:
            tx.after_commit(lambda: notify(project_id))

    async def dispatch_project(self, tx: Transaction, project_id: str) -> list[dict[str, Any]]:
        return await self.dispatch_projects(tx, [project_id])

    async def dispatch_projects(self, tx: Transaction, project_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Dispatch as many waiting tasks of each project as its limit allows.

        The project locks make the count-then-dispatch atomic across replicas, so the
        limit holds under races. A few statements whatever the number of projects."""
        if not project_ids:
            return []
        repo = TaskRepository(tx.conn)
        await repo.lock_projects(project_ids)
        limit = self.settings.task_management.max_concurrent_per_project
        rows = await repo.dispatchable_within(project_ids, limit)
        if not rows:
            return []
        return await self._start_attempts(
            tx, [dict(r) for r in rows], reason="dispatched", cause="dispatcher"
        )

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
        (started,) = await self._start_attempts(
            tx, [task], reason=reason, cause=cause, feedback=feedback, details=details
        )
        return started

    async def _start_attempts(
        self,
        tx: Transaction,
        tasks: Sequence[dict[str, Any]],
        *,
        reason: str,
        cause: str,
        feedback: Any = None,
        details: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        now = utcnow()
        inputs_of = await self._dependency_inputs(tx, tasks)
        steps: list[Step] = []
        for task in tasks:
            attempt = int(task["attempt"]) + 1
            deadline = now + timedelta(seconds=int(task["timeout_seconds"]))
            tier = task["tier"] or "small"
            inputs = inputs_of.get(task["id"])
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
            if inputs:
                # Kept on the task too: its provenance record links the records of these inputs.
                changes["context"] = context
            if task.get("started_at") is None:
                changes["started_at"] = now
            steps.append(
                Step(
                    {**task, "attempt": attempt},
                    TaskStatus.RUNNING,
                    reason=reason,
                    cause=cause,
                    changes=changes,
                    details=details,
                    events=[ready],
                )
            )
        return await self.transition_many(tx, steps, now=now)

    async def _dependency_inputs(
        self, tx: Transaction, tasks: Sequence[dict[str, Any]]
    ) -> dict[Any, list[dict[str, Any]]]:
        """The artifacts of the tasks each one depends on: its consumed inputs."""
        repo = TaskRepository(tx.conn)
        deps = await repo.dependencies_of([t["id"] for t in tasks])
        if not deps:
            return {}
        producers = await repo.get_many(sorted({d for ds in deps.values() for d in ds}))
        out: dict[Any, list[dict[str, Any]]] = {}
        for task_id, dep_ids in deps.items():
            inputs = out.setdefault(task_id, [])
            for dep_id in dep_ids:
                dep = producers.get(dep_id)
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
        return out

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
        repo = TaskRepository(tx.conn)
        children = await repo.subtasks(task["id"])
        # Every row this cancel will change is locked before any project lock is taken
        # (after_final): other flows lock a task's row, then its project.
        await repo.lock_rows([c["id"] for c in children if TaskStatus(c["status"]) not in FINAL_STATES])
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
        for child in children:
            if TaskStatus(child["status"]) not in FINAL_STATES:
                row = await repo.get(child["id"], for_update=True)
                if row is not None and TaskStatus(row["status"]) not in FINAL_STATES:
                    await self.cancel(tx, dict(row), reason=f"parent cancelled: {reason}", cause=cause)
        await self.after_final(tx, cancelled)
        return cancelled

    async def after_final(self, tx: Transaction, task: dict[str, Any]) -> None:
        """A task reached a final state: free its slot and settle its parent."""
        await self.slot_freed(tx, task["project_id"])
        if task.get("parent_id"):
            await self._settle_parent(tx, task)

    async def _settle_parent(self, tx: Transaction, child: dict[str, Any]) -> None:
        repo = TaskRepository(tx.conn)
        parent_row = await repo.get(child["parent_id"], for_update=True)
        if parent_row is None or TaskStatus(parent_row["status"]) != TaskStatus.DECOMPOSING:
            return
        parent = dict(parent_row)
        status = TaskStatus(child["status"])
        if status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            # The parent can no longer complete (and the child's dependents could never run):
            # it fails, and its other unfinished subtasks are cancelled.
            word = "failed" if status == TaskStatus.FAILED else "was cancelled"
            failed = await self.fail(
                tx,
                parent,
                reason=f"subtask {word}",
                cause=f"subtask:{child['id']}",
                error={"subtask_id": str(child["id"]), "status": status.value, "error": child.get("error")},
                publish=True,
            )
            for sibling in await repo.subtasks(parent["id"]):
                if TaskStatus(sibling["status"]) in FINAL_STATES:
                    continue
                row = await repo.get(sibling["id"], for_update=True)
                if row is not None and TaskStatus(row["status"]) not in FINAL_STATES:
                    await self.cancel(
                        tx,
                        dict(row),
                        reason=f"parent failed: subtask {child['id']} {word}",
                        cause=f"parent:{failed['id']}",
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
        stamp_trace(events)
        await unit_of_work(tx).outbox.add(events)


def stamp_trace(events: Sequence[ev.OutgoingEvent]) -> None:
    """Events carry the trace of the span that caused them."""
    traceparent = tracing.current_traceparent()
    if traceparent:
        for event in events:
            if event.traceparent is None:
                event.traceparent = traceparent


def was_in_flight(task: dict[str, Any]) -> bool:
    return TaskStatus(task["status"]) in IN_FLIGHT_STATES


def task_uuid(value: Any) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
