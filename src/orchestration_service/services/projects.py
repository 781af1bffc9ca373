"""Project views. Projects are implicit: a project exists once it has a task."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from orchestration_service.config import Settings
from orchestration_service.domain.errors import NotFound
from orchestration_service.domain.lifecycle import IN_FLIGHT_STATES, TaskStatus
from orchestration_service.repositories.ports import Storage


class ProjectService:
    def __init__(self, storage: Storage, settings: Settings) -> None:
        self.storage = storage
        self.settings = settings

    @property
    def limit(self) -> int:
        return self.settings.task_management.max_concurrent_per_project

    def _summary(self, project_id: str, counts: dict[str, int]) -> dict[str, Any]:
        full = {s.value: counts.get(s.value, 0) for s in TaskStatus}
        return {
            "project_id": project_id,
            "counts": full,
            "total": sum(full.values()),
            "in_flight": sum(full[s.value] for s in IN_FLIGHT_STATES),
            "max_concurrent": self.limit,
        }

    async def list(self, *, project_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
        async with self.storage.read() as uow:
            by_project = await uow.tasks.counts_by_status(project_ids)
        return [self._summary(p, c) for p, c in sorted(by_project.items())]

    async def status(self, project_id: str) -> dict[str, Any]:
        async with self.storage.read() as uow:
            counts = (await uow.tasks.counts_by_status([project_id])).get(project_id)
            if not counts:
                raise NotFound(f"project {project_id} has no tasks")
            oldest = await uow.tasks.oldest_waiting(project_id)
            times = await uow.tasks.recent_execution_times(project_id)
        summary = self._summary(project_id, counts)
        summary["oldest_waiting_task"] = (
            {"task_id": oldest["id"], "created_at": oldest["created_at"], "priority": oldest["priority"]}
            if oldest
            else None
        )
        summary["median_execution_time_ms"] = int(statistics.median(times)) if times else None
        return summary
