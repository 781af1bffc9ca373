"""New tasks: creation with its history and events, and decomposition into subtasks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from orchestration_service.domain import events as ev
from orchestration_service.domain.decomposition import CheckedPlan
from orchestration_service.domain.ids import uuid7
from orchestration_service.domain.lifecycle import TaskStatus
from orchestration_service.domain.task_tree import inherited_dependencies
from orchestration_service.repositories.ports import UnitOfWork
from orchestration_service.repositories.tasks.port import HistoryRecord, TaskRecord
from orchestration_service.services.lifecycle import payloads
from orchestration_service.services.lifecycle.transitions import (
    emit,
    history_row,
    stamp_trace,
    utcnow,
)
from orchestration_service.services.lifecycle.tree import TreeSteps


class Creation(TreeSteps):
    async def create(self, uow: UnitOfWork, rows: Sequence[TaskRecord], *, cause: str) -> None:
        """Insert new pending tasks with their first history row and their events."""
        await uow.tasks.insert_many(rows)
        history, events = self.creation_records(rows, cause=cause)
        await uow.tasks.add_history(history)
        await emit(uow, events)
        for _ in rows:
            self._after_commit_notify(uow, None, TaskStatus.PENDING.value)

    def creation_records(
        self, rows: Sequence[TaskRecord], *, cause: str
    ) -> tuple[list[HistoryRecord], list[ev.OutgoingEvent]]:
        """What creating ``rows`` writes besides them: a history row each, and the events
        ``task.created`` and ``task.status.pending`` each (with the current trace)."""
        now = rows[0]["created_at"] if rows else utcnow()
        pending = TaskStatus.PENDING.value
        history = [history_row(r, None, pending, "submitted", cause, None, now) for r in rows]
        out: list[ev.OutgoingEvent] = []
        for r in rows:
            out.append(payloads.created(r))
            out.append(payloads.status_changed(r, None, pending, "submitted", now))
        stamp_trace(out)
        return history, out

    async def decompose(
        self,
        uow: UnitOfWork,
        parent: TaskRecord,
        plan: CheckedPlan,
        *,
        cause: str,
        details: dict[str, Any] | None = None,
    ) -> list[TaskRecord]:
        """Create the plan's subtasks (pending, unrouted) with their dependencies and move
        the parent to ``decomposing``. The children are routed like any task (one marked not
        atomic is planned again), dispatched when their dependencies completed; the parent
        settles when they finish.

        A plan that would take the tree past ``routing.max_total_subtasks`` creates nothing:
        the parent runs whole, and its history and routing document say why (returns [])."""
        breach = await self.tree_cap_breach(uow, parent, plan)
        if breach is not None:
            routing = {k: v for k, v in (parent.get("routing") or {}).items() if k != "plan"}
            routing["not_decomposed"] = breach
            await uow.tasks.update(parent["id"], {"routing": routing})
            await self.note(uow, parent, reason=f"runs whole: {breach}", cause=cause)
            return []
        now = utcnow()
        options = {k: v for k, v in (parent.get("options") or {}).items() if k != "decompose"}
        ids = {s.id: uuid7() for s in plan.subtasks}
        rows: list[TaskRecord] = []
        for i, s in enumerate(plan.subtasks):
            # A microsecond apart: "oldest first" lists the subtasks in the plan's order.
            created = now + timedelta(microseconds=i)
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
                    "created_at": created,
                    "updated_at": created,
                }
            )
        await self.create(uow, rows, cause=cause)
        # A nested parent's own waits pass to its subtasks that wait for no sibling: the
        # parent was routed (and planned) before what it depends on completed.
        parent_waits = (await uow.tasks.dependencies_of([parent["id"]])).get(parent["id"], [])
        await uow.tasks.add_dependencies(
            [
                {"task_id": ids[s.id], "depends_on_id": ids[dep]}
                for s in plan.subtasks
                for dep in s.dependencies
            ]
            + inherited_dependencies([ids[r] for r in plan.roots], parent_waits)
        )
        await self.transition(
            uow,
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
