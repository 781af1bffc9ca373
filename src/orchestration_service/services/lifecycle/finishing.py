"""Leaving flight: retries, failures, cancellations (cascading to subtasks), and the
settling of a decomposed parent when its subtasks finish."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from orchestration_service.domain.lifecycle import FINAL_STATES, TaskStatus
from orchestration_service.repositories.ports import UnitOfWork
from orchestration_service.repositories.tasks.port import TaskRecord
from orchestration_service.services.lifecycle import payloads
from orchestration_service.services.lifecycle.attempts import Attempts
from orchestration_service.services.lifecycle.transitions import utcnow
from orchestration_service.services.lifecycle.tree import TreeSteps

# Writes a completed parent's provenance record (its subtasks' records as inputs); returns
# its id. Set by the container: provenance is a use case the lifecycle must not import.
ParentRecorder = Callable[[UnitOfWork, TaskRecord, Sequence[TaskRecord]], Awaitable[uuid.UUID]]


class Finishing(Attempts, TreeSteps):
    record_parent: ParentRecorder | None = None

    async def retry_or_fail(
        self,
        uow: UnitOfWork,
        task: TaskRecord,
        *,
        reason: str,
        cause: str,
        error: Any,
        feedback: Any = None,
        retry: bool = True,
        publish_failure: bool = True,
    ) -> TaskRecord:
        """Start another attempt if attempts remain (and ``retry``); otherwise fail."""
        if retry and int(task["attempt"]) < int(task["max_attempts"]):
            return await self._start_attempt(
                uow,
                task,
                reason=f"retry after {reason}",
                cause=cause,
                feedback=feedback,
                details={"error": error} if error is not None else None,
            )
        return await self.fail(uow, task, reason=reason, cause=cause, error=error, publish=publish_failure)

    async def fail(
        self, uow: UnitOfWork, task: TaskRecord, *, reason: str, cause: str, error: Any, publish: bool
    ) -> TaskRecord:
        # Only failures this service decides are announced as task.failed; a worker's own
        # task.failed was already on the bus.
        events = [payloads.failed(task, error, reason)] if publish else []
        failed = await self.transition(
            uow,
            task,
            TaskStatus.FAILED,
            reason=reason,
            cause=cause,
            changes={"error": {"reason": reason, "detail": error}},
            events=events,
        )
        await self.after_final(uow, failed)
        return failed

    async def cancel(self, uow: UnitOfWork, task: TaskRecord, *, reason: str, cause: str) -> TaskRecord:
        # Every row this cancel will change, all levels down, is locked before any project
        # lock is taken (after_final): other flows lock a task's row, then its project.
        unfinished = await self.lock_subtree(uow, task)
        children = [r for r in unfinished if r["parent_id"] == task["id"]]
        cancelled = await self.transition(
            uow,
            task,
            TaskStatus.CANCELLED,
            reason=reason,
            cause=cause,
            events=[payloads.cancelled(task, reason)],
        )
        for child in children:
            row = await uow.tasks.get(child["id"], for_update=True)
            if row is not None and TaskStatus(row["status"]) not in FINAL_STATES:
                await self.cancel(uow, row, reason=f"parent cancelled: {reason}", cause=cause)
        await self.after_final(uow, cancelled)
        return cancelled

    async def after_final(self, uow: UnitOfWork, task: TaskRecord) -> None:
        """A task reached a final state: free its slot and settle its parent."""
        await self.slot_freed(uow, task["project_id"])
        if task.get("parent_id"):
            await self._settle_parent(uow, task)

    async def _settle_parent(self, uow: UnitOfWork, child: TaskRecord) -> None:
        parent_id = child["parent_id"]
        parent = None if parent_id is None else await uow.tasks.get(parent_id, for_update=True)
        if parent is None or TaskStatus(parent["status"]) != TaskStatus.DECOMPOSING:
            return
        status = TaskStatus(child["status"])
        if status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            # The parent can no longer complete (and the child's dependents could never run):
            # it fails, and its other unfinished subtasks are cancelled.
            word = "failed" if status == TaskStatus.FAILED else "was cancelled"
            failed = await self.fail(
                uow,
                parent,
                reason=f"subtask {word}",
                cause=f"subtask:{child['id']}",
                error={"subtask_id": str(child["id"]), "status": status.value, "error": child.get("error")},
                publish=True,
            )
            for sibling in await uow.tasks.subtasks(parent["id"]):
                if TaskStatus(sibling["status"]) in FINAL_STATES:
                    continue
                row = await uow.tasks.get(sibling["id"], for_update=True)
                if row is not None and TaskStatus(row["status"]) not in FINAL_STATES:
                    await self.cancel(
                        uow,
                        row,
                        reason=f"parent failed: subtask {child['id']} {word}",
                        cause=f"parent:{failed['id']}",
                    )
            return
        siblings = await uow.tasks.subtasks(parent["id"])
        if all(TaskStatus(s["status"]) == TaskStatus.COMPLETED for s in siblings):
            await self.complete_parent(uow, parent, siblings)
        elif status == TaskStatus.COMPLETED:
            # A finished child may unblock siblings that depended on it.
            await self.dispatch_project(uow, parent["project_id"])

    async def complete_parent(
        self, uow: UnitOfWork, parent: TaskRecord, children: Sequence[TaskRecord]
    ) -> None:
        artifacts: list[Any] = []
        rows: list[TaskRecord] = []
        for c in children:
            row = await uow.tasks.get(c["id"])
            if row is not None:
                rows.append(row)
                artifacts.extend(row["artifacts"] or [])
        now = utcnow()
        started = parent.get("started_at") or parent["created_at"]
        record = self.record_parent
        record_id = None if record is None else await record(uow, {**parent, "artifacts": artifacts}, rows)
        done = await self.transition(
            uow,
            parent,
            TaskStatus.COMPLETED,
            reason="all subtasks completed",
            cause="subtasks",
            changes={
                "artifacts": artifacts,
                "execution_time_ms": int((now - started).total_seconds() * 1000),
                "provenance_id": record_id,
            },
            events=[payloads.completed(parent, None if record_id is None else str(record_id), artifacts)],
            now=now,
        )
        await self.after_final(uow, done)
