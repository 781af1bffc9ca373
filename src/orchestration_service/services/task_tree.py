"""Reading a task tree: the task and every subtask under it, all levels, nested.

One read transaction; bounded: at most :data:`TREE_NODE_LIMIT` subtasks, shallowest first
(a tree cut short says ``truncated``). A tree is normally far smaller: the router caps it
at ``routing.max_total_subtasks``."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from orchestration_service.domain.errors import NotFound
from orchestration_service.domain.task_tree import TreeRow, build_tree
from orchestration_service.repositories.ports import Storage
from orchestration_service.repositories.tasks.port import TaskRecord

TREE_NODE_LIMIT = 1000


def _row(r: TaskRecord) -> TreeRow:
    return TreeRow(r["id"], r.get("parent_id"), r["status"], r["description"])


async def load_tree(
    storage: Storage,
    task_id: uuid.UUID,
    *,
    project_ids: Sequence[str] | None = None,
    limit: int = TREE_NODE_LIMIT,
) -> dict[str, Any]:
    """The nested tree under ``task_id`` (see ``domain.task_tree.build_tree``), with
    ``subtask_count`` (nodes below the top returned) and ``truncated``. A task outside
    ``project_ids`` does not exist for the caller."""
    async with storage.read() as uow:
        task = await uow.tasks.get(task_id)
        if task is None or (project_ids is not None and task["project_id"] not in project_ids):
            raise NotFound(f"task {task_id} does not exist")
        rows = list(await uow.tasks.descendants(task_id, limit=limit + 1))
        truncated = len(rows) > limit
        rows = rows[:limit]
        deps = await uow.tasks.dependencies_of([task_id, *(r["id"] for r in rows)])
    tree = build_tree(_row(task), [_row(r) for r in rows], deps)
    return {**tree, "subtask_count": len(rows), "truncated": truncated}
