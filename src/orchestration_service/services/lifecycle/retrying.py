"""Retry by hand: a failed or cancelled task runs again because a person asked.

A task that did its own work goes back to ``pending`` and is routed and dispatched anew (a
new attempt, even past ``max_attempts``). A decomposed task goes back to ``decomposing``:
of its descendants, at every depth, only the failed and cancelled ones run again; completed
work is kept, and the task settles when its subtasks finish, as the first time."""

from __future__ import annotations

from orchestration_service.domain.lifecycle import (
    RETRYABLE_BY_HAND,
    IllegalTransition,
    TaskStatus,
    reruns_on_retry,
    retried_state,
)
from orchestration_service.repositories.ports import UnitOfWork
from orchestration_service.repositories.tasks.port import TaskRecord
from orchestration_service.services.lifecycle.finishing import Finishing


class Retrying(Finishing):
    async def retry_by_hand(self, uow: UnitOfWork, task: TaskRecord, *, requested_by: str) -> TaskRecord:
        """Run ``task`` (locked) again; IllegalTransition unless it failed or was cancelled."""
        status = TaskStatus(task["status"])
        if status not in RETRYABLE_BY_HAND:
            raise IllegalTransition(status, TaskStatus.PENDING)
        retried = await self._rerun(uow, task, requested_by=requested_by, cause=f"retry:{requested_by}")
        if TaskStatus(retried["status"]) == TaskStatus.DECOMPOSING and await self._settle_if_done(
            uow, retried
        ):
            return retried
        # Work to route and dispatch: the router is woken after this commit, not at its next poll.
        await self.slot_freed(uow, task["project_id"])
        return retried

    async def _rerun(self, uow: UnitOfWork, task: TaskRecord, *, requested_by: str, cause: str) -> TaskRecord:
        children = await uow.tasks.subtasks(task["id"])
        target = retried_state(decomposed=bool(children))
        details = {
            "requested_by": requested_by,
            "previous_status": task["status"],
            "error": task.get("error"),
        }
        changes: dict[str, object] = {"error": None, "completed_at": None, "deadline_at": None}
        if target == TaskStatus.PENDING:
            # Routed anew: the router may decide differently this time (another tier, say).
            changes.update({"routed_at": None, "routing_claimed_until": None, "feedback": None})
        retried = await self.transition(
            uow,
            task,
            target,
            reason=f"retry requested by {requested_by}",
            cause=cause,
            changes=changes,
            details=details,
        )
        if target == TaskStatus.DECOMPOSING:
            await uow.tasks.lock_rows([c["id"] for c in children if reruns_on_retry(TaskStatus(c["status"]))])
            for child in children:
                if not reruns_on_retry(TaskStatus(child["status"])):
                    continue
                row = await uow.tasks.get(child["id"], for_update=True)
                if row is not None and reruns_on_retry(TaskStatus(row["status"])):
                    await self._rerun(uow, row, requested_by=requested_by, cause=cause)
        return retried

    async def _settle_if_done(self, uow: UnitOfWork, parent: TaskRecord) -> bool:
        """A retried parent none of whose subtasks had to run again (it was cancelled after
        they all completed) completes now, as it would have. True if it did."""
        children = await uow.tasks.subtasks(parent["id"])
        if not all(TaskStatus(c["status"]) == TaskStatus.COMPLETED for c in children):
            return False
        await self.complete_parent(uow, parent, children)
        return True
