"""Small in-memory fakes of the storage ports, for use-case tests that need no database.

Only what the lifecycle steps ask is implemented; the real implementations are tested on
both databases by tests/integration/repositories."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from orchestration_service.domain.events import OutgoingEvent
from orchestration_service.domain.lifecycle import IN_FLIGHT_STATES, TaskStatus
from orchestration_service.repositories.tasks import HistoryRecord, TaskRecord

_IN_FLIGHT = {s.value for s in IN_FLIGHT_STATES}


class FakeTasks:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, TaskRecord] = {}
        self.history_rows: list[HistoryRecord] = []
        self.deps: list[tuple[uuid.UUID, uuid.UUID]] = []
        self.locked_projects: list[str] = []
        self.outbox: list[OutgoingEvent] = []

    async def insert_many(self, rows: Sequence[TaskRecord]) -> None:
        for row in rows:
            self.rows[row["id"]] = dict(row)

    async def get(self, task_id: uuid.UUID, *, for_update: bool = False) -> TaskRecord | None:
        row = self.rows.get(task_id)
        return None if row is None else dict(row)

    async def get_many(self, task_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, TaskRecord]:
        return {i: dict(self.rows[i]) for i in task_ids if i in self.rows}

    async def update(self, task_id: uuid.UUID, values: dict[str, Any]) -> None:
        await self.update_many([(task_id, values)])

    async def update_many(self, changes: Sequence[tuple[uuid.UUID, dict[str, Any]]]) -> None:
        for task_id, values in changes:
            self.rows[task_id].update(values)

    async def write_transition(
        self,
        updates: Sequence[tuple[uuid.UUID, dict[str, Any]]],
        history: Sequence[HistoryRecord],
        events: Sequence[OutgoingEvent],
        now: datetime,
    ) -> None:
        await self.update_many(updates)
        await self.add_history(history)
        self.outbox.extend(events)

    async def add_history(self, rows: Sequence[HistoryRecord]) -> None:
        self.history_rows.extend(rows)

    async def subtasks(self, parent_id: uuid.UUID) -> Sequence[TaskRecord]:
        kids = [r for r in self.rows.values() if r.get("parent_id") == parent_id]
        return [dict(r) for r in sorted(kids, key=lambda r: (r["created_at"], r["id"]))]

    async def descendants(self, task_id: uuid.UUID, *, limit: int) -> Sequence[TaskRecord]:
        found: list[TaskRecord] = []
        level = [task_id]
        while level:
            kids = [r for r in self.rows.values() if r.get("parent_id") in level]
            found.extend(kids)
            level = [r["id"] for r in kids]
        found.sort(key=lambda r: (r["depth"], r["created_at"], r["id"]))
        return [dict(r) for r in found[:limit]]

    async def dependencies_of(self, task_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[uuid.UUID]]:
        out: dict[uuid.UUID, list[uuid.UUID]] = {}
        for task_id, on in self.deps:
            if task_id in task_ids:
                out.setdefault(task_id, []).append(on)
        return out

    async def add_dependencies(self, rows: Sequence[dict[str, uuid.UUID]]) -> None:
        self.deps.extend((r["task_id"], r["depends_on_id"]) for r in rows)

    async def lock_rows(self, task_ids: Sequence[uuid.UUID]) -> None:
        pass

    async def lock_projects(self, project_ids: Sequence[str]) -> None:
        self.locked_projects.extend(project_ids)

    async def dispatchable_within(self, project_ids: Sequence[str], limit: int) -> list[TaskRecord]:
        out: list[TaskRecord] = []
        for project in sorted(set(project_ids)):
            mine = [r for r in self.rows.values() if r["project_id"] == project]
            free = limit - sum(r["status"] in _IN_FLIGHT for r in mine)
            ready = [
                r
                for r in mine
                if r["status"] == TaskStatus.PENDING.value
                and r.get("routed_at") is not None
                and all(
                    self.rows[on]["status"] == TaskStatus.COMPLETED.value
                    for t, on in self.deps
                    if t == r["id"]
                )
            ]
            ready.sort(key=lambda r: (-r["priority_rank"], r["created_at"], r["id"]))
            out.extend(dict(r) for r in ready[: max(free, 0)])
        return out


class FakeOutbox:
    def __init__(self, tasks: FakeTasks) -> None:
        self.events = tasks.outbox

    async def add(self, events: Sequence[OutgoingEvent]) -> None:
        self.events.extend(events)


class FakeProjects:
    """Projects without constitutions: the lifecycle only asks for the current ones."""

    async def current_constitutions(self, project_ids: Sequence[str]) -> dict[str, Any]:
        return {}


class FakeUnitOfWork:
    """The ports a lifecycle step uses; ``commit`` runs the after-commit hooks."""

    def __init__(self, tasks: FakeTasks | None = None) -> None:
        self.tasks = tasks or FakeTasks()
        self.outbox = FakeOutbox(self.tasks)
        self.projects = FakeProjects()
        self.hooks: list[Callable[[], None]] = []

    def after_commit(self, hook: Callable[[], None]) -> None:
        self.hooks.append(hook)

    def commit(self) -> None:
        hooks, self.hooks = self.hooks, []
        for hook in hooks:
            hook()
