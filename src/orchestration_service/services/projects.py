"""Projects: their settings, constitution versions, archive, and status views.

A project exists once it has a row: created by ``POST /projects`` or by the first
submission to it (``projects.auto_create``).
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from orchestration_service.config import Settings
from orchestration_service.domain.errors import NotFound, ProjectBusy, ProjectExists, ValidationFailed
from orchestration_service.domain.lifecycle import ACTIVE_STATES, IN_FLIGHT_STATES, TaskStatus
from orchestration_service.repositories.ports import Storage, UnitOfWork
from orchestration_service.repositories.projects import SETTING_NAMES, Constitution, ProjectRecord
from orchestration_service.services.lifecycle import utcnow
from orchestration_service.services.project_settings import ProjectDirectory, effective, new_project

CONSTITUTION_MAX_BYTES = 65_536


def _check_constitution(text: str) -> str:
    if len(text.encode()) > CONSTITUTION_MAX_BYTES:
        raise ValidationFailed(f"the constitution is over {CONSTITUTION_MAX_BYTES} bytes (UTF-8)")
    return text


class ProjectService:
    def __init__(
        self,
        storage: Storage,
        settings: Settings,
        directory: ProjectDirectory | None = None,
        on_limit_changed: Callable[[str], None] = lambda _project_id: None,
    ) -> None:
        self.storage = storage
        self.settings = settings
        self.directory = directory or ProjectDirectory(storage, settings)
        # After a commit that changed a project's limit: the dispatcher looks at it at once.
        self.on_limit_changed = on_limit_changed

    def _summary(
        self, project_id: str, counts: dict[str, int], project: ProjectRecord | None
    ) -> dict[str, Any]:
        full = {s.value: counts.get(s.value, 0) for s in TaskStatus}
        own = project.max_concurrent if project is not None else None
        return {
            "project_id": project_id,
            "name": project.name if project is not None else None,
            "archived": project is not None and project.archived_at is not None,
            "counts": full,
            "total": sum(full.values()),
            "in_flight": sum(full[s.value] for s in IN_FLIGHT_STATES),
            "max_concurrent": own or self.settings.task_management.max_concurrent_per_project,
        }

    async def list(
        self, *, project_ids: Sequence[str] | None = None, include_archived: bool = False
    ) -> list[dict[str, Any]]:
        async with self.storage.read() as uow:
            projects = await uow.projects.list(include_archived=include_archived, project_ids=project_ids)
            by_project = await uow.tasks.counts_by_status([p.project_id for p in projects])
        return [self._summary(p.project_id, by_project.get(p.project_id, {}), p) for p in projects]

    async def status(self, project_id: str) -> dict[str, Any]:
        async with self.storage.read() as uow:
            project = await uow.projects.get(project_id)
            counts = (await uow.tasks.counts_by_status([project_id])).get(project_id)
            if not counts and project is None:
                raise NotFound(f"project {project_id} does not exist")
            oldest = await uow.tasks.oldest_waiting(project_id)
            times = await uow.tasks.recent_execution_times(project_id)
        summary = self._summary(project_id, counts or {}, project)
        summary["oldest_waiting_task"] = (
            {"task_id": oldest["id"], "created_at": oldest["created_at"], "priority": oldest["priority"]}
            if oldest
            else None
        )
        summary["median_execution_time_ms"] = int(statistics.median(times)) if times else None
        return summary

    # -- the project itself ----------------------------------------------------------
    async def create(
        self,
        project_id: str,
        *,
        name: str | None,
        description: str | None,
        settings: dict[str, Any],
        constitution: str | None,
        created_by: str | None,
    ) -> dict[str, Any]:
        values = {k: settings.get(k) for k in SETTING_NAMES}
        async with self.storage.transaction() as uow:
            if not await uow.projects.add(
                new_project(project_id, name=name, description=description, **values)
            ):
                raise ProjectExists(f"project {project_id} already exists")
            if constitution is not None:
                await self._new_constitution(uow, project_id, constitution, created_by)
        await self.directory.changed(project_id)
        return await self.get(project_id)

    async def get(self, project_id: str) -> dict[str, Any]:
        async with self.storage.read() as uow:
            project = await uow.projects.get(project_id)
            if project is None:
                raise NotFound(f"project {project_id} does not exist")
            counts = (await uow.tasks.counts_by_status([project_id])).get(project_id, {})
            current = await uow.projects.current_constitutions([project_id])
        return self._view(project, counts, current.get(project_id))

    def _view(
        self, project: ProjectRecord, counts: dict[str, int], constitution: Constitution | None
    ) -> dict[str, Any]:
        return {
            "project_id": project.project_id,
            "name": project.name,
            "description": project.description,
            "created_at": project.created_at,
            "updated_at": project.updated_at,
            "archived_at": project.archived_at,
            "settings": {k: getattr(project, k) for k in SETTING_NAMES},
            "effective_settings": effective(project, self.settings),
            "constitution": None
            if constitution is None
            else {
                "version": constitution.version,
                "sha256": constitution.sha256,
                "created_at": constitution.created_at,
            },
            "status": self._summary(project.project_id, counts, project),
        }

    async def update(
        self,
        project_id: str,
        *,
        fields: dict[str, object],
        settings: dict[str, Any] | None,
        constitution: str | None,
        changed_by: str | None,
    ) -> dict[str, Any]:
        """Change what is given; a setting given as None falls back to the configuration.
        Effective at once: a new limit is read by the next dispatch, which this wakes."""
        values = dict(fields)
        if settings:
            values.update({k: v for k, v in settings.items() if k in SETTING_NAMES})
        async with self.storage.transaction() as uow:
            project = await uow.projects.get(project_id, for_update=True)
            if project is None:
                raise NotFound(f"project {project_id} does not exist")
            if values:
                values["updated_at"] = utcnow()
                await uow.projects.update(project_id, values)
                await uow.projects.changed()  # other processes' caches of settings
            if constitution is not None:
                await self._new_constitution(uow, project_id, constitution, changed_by, project)
        await self.directory.changed(project_id)
        if "max_concurrent" in values:
            self.on_limit_changed(project_id)
        return await self.get(project_id)

    async def archive(self, project_id: str) -> dict[str, Any]:
        """Archive the project: it takes no new task. Refused while it has unfinished tasks
        (a pending one would still start)."""
        async with self.storage.transaction() as uow:
            project = await uow.projects.get(project_id, for_update=True)
            if project is None:
                raise NotFound(f"project {project_id} does not exist")
            if project.archived_at is None:
                # The project lock: no dispatch of this project runs meanwhile.
                await uow.tasks.lock_projects([project_id])
                counts = (await uow.tasks.counts_by_status([project_id])).get(project_id, {})
                busy = sum(counts.get(s.value, 0) for s in ACTIVE_STATES)
                if busy:
                    raise ProjectBusy(
                        f"project {project_id} has {busy} unfinished tasks: cancel them or let them finish",
                        extra={"unfinished": busy},
                    )
                now = utcnow()
                await uow.projects.update(project_id, {"archived_at": now, "updated_at": now})
                await uow.projects.changed()
        await self.directory.changed(project_id)
        return await self.get(project_id)

    # -- constitution ----------------------------------------------------------------
    async def _new_constitution(
        self,
        uow: UnitOfWork,
        project_id: str,
        text: str,
        by: str | None,
        project: ProjectRecord | None = None,
    ) -> None:
        _check_constitution(text)
        current = project.constitution_version if project is not None else None
        version = (current or 0) + 1
        now = utcnow()
        await uow.projects.add_constitution(
            Constitution(project_id, version, text, hashlib.sha256(text.encode()).hexdigest(), now, by)
        )
        await uow.projects.update(project_id, {"constitution_version": version, "updated_at": now})

    async def constitution(self, project_id: str, version: int | None = None) -> Constitution:
        async with self.storage.read() as uow:
            project = await uow.projects.get(project_id)
            if project is None:
                raise NotFound(f"project {project_id} does not exist")
            wanted = version if version is not None else project.constitution_version
            found = None if wanted is None else await uow.projects.constitution(project_id, wanted)
        if found is None:
            which = f"version {version}" if version is not None else "any version"
            raise NotFound(f"project {project_id} has no constitution ({which})")
        return found
