"""Task trees in the lifecycle: the cap on a whole tree and the locks a subtree's cancel takes.

The rules are pure, in ``domain/task_tree.py``; these steps read what they need in the
caller's unit of work."""

from __future__ import annotations

from collections.abc import Sequence

from orchestration_service.domain.decomposition import CheckedPlan
from orchestration_service.domain.lifecycle import FINAL_STATES, TaskStatus
from orchestration_service.domain.task_tree import cap_breach
from orchestration_service.repositories.ports import UnitOfWork
from orchestration_service.repositories.tasks.port import TaskRecord
from orchestration_service.services.lifecycle.transitions import Transitions

# A chain of parents is at most routing.max_depth (50 at most) long; this ends a walk up
# damaged data that loops.
MAX_ANCESTORS = 1000


class TreeSteps(Transitions):
    async def root_of(self, uow: UnitOfWork, task: TaskRecord) -> TaskRecord:
        """The top task of ``task``'s tree (``task`` itself when it has no parent)."""
        current = task
        for _ in range(MAX_ANCESTORS):
            parent_id = current.get("parent_id")
            if parent_id is None:
                return current
            parent = await uow.tasks.get(parent_id)
            if parent is None:
                return current
            current = parent
        return current

    async def tree_cap_breach(self, uow: UnitOfWork, task: TaskRecord, plan: CheckedPlan) -> str | None:
        """Why ``plan`` would take ``task``'s tree past ``routing.max_total_subtasks``;
        None when it fits.

        The top task's row is locked first, so two subtasks of one tree planned at once
        count one after the other (a task is locked before its ancestors, as when a
        finishing subtask settles its parent)."""
        cap = self.settings.routing.max_total_subtasks
        root = await self.root_of(uow, task)
        existing = 0
        if root["id"] != task["id"]:
            await uow.tasks.get(root["id"], for_update=True)
            existing = len(await uow.tasks.descendants(root["id"], limit=cap + 1))
        return cap_breach(existing=existing, planned=len(plan.subtasks), cap=cap)

    async def lock_subtree(self, uow: UnitOfWork, task: TaskRecord) -> Sequence[TaskRecord]:
        """Lock every unfinished task under ``task`` (all levels) before a cancel takes any
        project lock; returns them."""
        limit = max(self.settings.routing.max_total_subtasks, 1) * 10
        rows = await uow.tasks.descendants(task["id"], limit=limit)
        open_rows = [r for r in rows if TaskStatus(r["status"]) not in FINAL_STATES]
        await uow.tasks.lock_rows([r["id"] for r in open_rows])
        return open_rows
