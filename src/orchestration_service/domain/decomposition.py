"""Checking a decomposition plan before any subtask exists.

Pure: the Agent Service proposes subtasks with dependencies between them; :func:`check_plan`
accepts the plan or says, in one sentence, why not. A rejected plan never creates anything:
the task runs whole and its history carries the reason.

Depth means nesting: a submitted task is depth 0, its subtasks depth 1, and so on. A plan
for a task at depth ``d`` creates subtasks at depth ``d + 1``, which must not exceed
``max_depth``; the ``decomposition_depth`` the agent reports (levels of nesting it used, if
it says) must fit in the levels left, ``max_depth - d``. The length of dependency chains
inside one plan is not a depth: a chain of ten sequential steps is ten siblings at one
level, bounded by ``max_subtasks``, not by ``max_depth``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


class PlanError(ValueError):
    """The plan cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class PlannedSubtask:
    id: str
    description: str
    dependencies: tuple[str, ...] = ()
    is_atomic: bool = True


@dataclass(frozen=True, slots=True)
class Plan:
    subtasks: tuple[PlannedSubtask, ...]
    decomposition_depth: int | None = None


@dataclass(frozen=True, slots=True)
class CheckedPlan:
    """An accepted plan: subtasks in a dependency-respecting order (each after its
    dependencies, otherwise in the agent's order) and the longest dependency chain."""

    subtasks: tuple[PlannedSubtask, ...]
    longest_chain: int
    child_depth: int
    roots: tuple[str, ...] = field(default=())


def check_plan(plan: Plan, *, parent_depth: int, max_depth: int, max_subtasks: int) -> CheckedPlan:
    """Accept ``plan`` for a task at ``parent_depth`` or raise :class:`PlanError`."""
    subtasks = plan.subtasks
    if not subtasks:
        raise PlanError("the plan has no subtasks")
    if len(subtasks) > max_subtasks:
        raise PlanError(f"the plan has {len(subtasks)} subtasks, more than the limit of {max_subtasks}")
    child_depth = parent_depth + 1
    if child_depth > max_depth:
        raise PlanError(f"subtasks would be at depth {child_depth}, deeper than max_depth {max_depth}")
    left = max_depth - parent_depth
    if plan.decomposition_depth is not None and plan.decomposition_depth > left:
        raise PlanError(
            f"the plan is {plan.decomposition_depth} levels deep; only {left} of max_depth {max_depth} "
            "are left at this task"
        )
    by_id: dict[str, PlannedSubtask] = {}
    for s in subtasks:
        if not s.id:
            raise PlanError("a subtask has an empty id")
        if s.id in by_id:
            raise PlanError(f"duplicate subtask id {s.id!r}")
        if not s.description.strip():
            raise PlanError(f"subtask {s.id!r} has an empty description")
        by_id[s.id] = s
    for s in subtasks:
        for dep in s.dependencies:
            if dep == s.id:
                raise PlanError(f"cycle: subtask {s.id!r} depends on itself")
            if dep not in by_id:
                raise PlanError(f"subtask {s.id!r} depends on unknown subtask {dep!r}")
    order = _topological(subtasks)
    chain: dict[str, int] = {}
    for s in order:
        chain[s.id] = 1 + max((chain[d] for d in s.dependencies), default=0)
    return CheckedPlan(
        subtasks=tuple(order),
        longest_chain=max(chain.values()),
        child_depth=child_depth,
        roots=tuple(s.id for s in order if not s.dependencies),
    )


def _topological(subtasks: Sequence[PlannedSubtask]) -> list[PlannedSubtask]:
    """Kahn's algorithm, stable: among ready subtasks, the agent's order wins."""
    position = {s.id: i for i, s in enumerate(subtasks)}
    waiting = {s.id: set(s.dependencies) for s in subtasks}
    dependents: dict[str, list[str]] = {s.id: [] for s in subtasks}
    for s in subtasks:
        for d in set(s.dependencies):
            dependents[d].append(s.id)
    ready = sorted((i for i, deps in waiting.items() if not deps), key=position.__getitem__)
    by_id = {s.id: s for s in subtasks}
    out: list[PlannedSubtask] = []
    while ready:
        current = ready.pop(0)
        out.append(by_id[current])
        for nxt in dependents[current]:
            waiting[nxt].discard(current)
            if not waiting[nxt]:
                ready.append(nxt)
        ready.sort(key=position.__getitem__)
    if len(out) < len(subtasks):
        stuck = sorted((i for i, deps in waiting.items() if deps), key=position.__getitem__)
        cycle = " -> ".join(repr(i) for i in _cycle(stuck, waiting))
        raise PlanError(f"cycle: {cycle} (each depends on the next)")
    return out


def _cycle(stuck: list[str], waiting: dict[str, set[str]]) -> list[str]:
    """One cycle among the stuck subtasks: each still waits for another stuck one."""
    seen: dict[str, int] = {}
    path: list[str] = []
    node = stuck[0]
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = min(waiting[node], key=stuck.index)
    return [*path[seen[node] :], node]
