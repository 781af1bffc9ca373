"""Nested decomposition: the pure rules of a task tree.

A submitted task that asks for decomposition is the root (depth 0). The Agent Service plans
its subtasks and marks each ``is_atomic``; a subtask marked ``is_atomic: false`` is planned
again, with the levels left, down to ``routing.max_depth`` (see ``decomposition.py`` for
what a plan must satisfy at one level). Two rules here hold for the whole tree:

- the cap: a tree has at most ``routing.max_total_subtasks`` subtasks, all levels together.
  A plan that would take the tree past the cap is not used: its task runs whole (as an
  atomic subtask), like any plan that cannot be used, with the reason in its history. The
  tasks already planned keep running; nothing fails because the agent planned too much.
- inherited waits: a subtask waits for its own siblings (the plan's dependencies) and for
  what its parent waited for; a parent's dependencies are handed down to its new subtasks
  that have none inside the plan, so no part of a subtree starts before the parent could.

:func:`build_tree` assembles the flat rows of a subtree into the nested shape the API
returns.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def wants_nested_plan(context: Mapping[str, Any] | None) -> bool:
    """A subtask the Agent Service marked not atomic is decomposed again."""
    subtask = (context or {}).get("subtask")
    return isinstance(subtask, Mapping) and subtask.get("is_atomic") is False


def cap_breach(*, existing: int, planned: int, cap: int) -> str | None:
    """Why a plan of ``planned`` subtasks cannot join a tree that has ``existing``
    subtasks under a cap of ``cap``; None when it fits."""
    total = existing + planned
    if total <= cap:
        return None
    return (
        f"the task tree would have {total} subtasks ({existing} already, {planned} planned), "
        f"more than routing.max_total_subtasks {cap}"
    )


def inherited_dependencies(
    roots: Iterable[uuid.UUID], parent_waits_for: Sequence[uuid.UUID]
) -> list[dict[str, uuid.UUID]]:
    """Dependency rows handing the parent's own dependencies to its new subtasks that have
    none inside the plan (the others wait for those through their siblings)."""
    return [{"task_id": r, "depends_on_id": d} for r in roots for d in parent_waits_for]


@dataclass(frozen=True, slots=True)
class TreeRow:
    id: uuid.UUID
    parent_id: uuid.UUID | None
    status: str
    description: str


def build_tree(
    root: TreeRow,
    rows: Sequence[TreeRow],
    dependencies: Mapping[uuid.UUID, Sequence[uuid.UUID]],
) -> dict[str, Any]:
    """The nested tree under ``root``: each node ``{task_id, status, description,
    depends_on, children}``, children in ``rows`` order. ``depends_on`` lists the siblings a
    node waits for (the plan's dependencies); waits inherited from an ancestor show on that
    ancestor; the top node, whose siblings are not in the tree, lists all it waits for.
    Rows whose parent is not in the tree (cut off by a size limit) are left out."""
    nodes: dict[uuid.UUID, dict[str, Any]] = {}
    parents: dict[uuid.UUID, uuid.UUID | None] = {}
    for row in (root, *rows):
        if row.id in nodes:
            continue
        nodes[row.id] = {
            "task_id": row.id,
            "status": row.status,
            "description": row.description,
            "depends_on": [],
            "children": [],
        }
        parents[row.id] = row.parent_id
    for node_id, node in nodes.items():
        mine = parents[node_id]
        waits = dependencies.get(node_id, ())
        node["depends_on"] = (
            list(waits) if node_id == root.id else [d for d in waits if d in parents and parents[d] == mine]
        )
    for row in rows:
        if row.id == root.id or row.parent_id is None:
            continue
        parent = nodes.get(row.parent_id)
        if parent is not None:
            parent["children"].append(nodes[row.id])
    return nodes[root.id]


def node_ids(tree: Mapping[str, Any]) -> list[str]:
    """Every task id in a tree built by :func:`build_tree`, top first, as text."""
    out = [str(tree["task_id"])]
    for child in tree.get("children") or ():
        out.extend(node_ids(child))
    return out
