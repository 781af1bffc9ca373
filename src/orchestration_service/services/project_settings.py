"""A project's effective settings, and the submit path's cheap view of them.

Each of a project's settings falls back to the configuration when unset. The submit path
reads them for every submission, so a process keeps the projects it has seen, and at most
every ``projects.cache_seconds`` reads one number that every change of a project's settings
raises (``ProjectRepository.generation``): when it moved, the process forgets them all. A
change made on this process is seen at once (the use case drops the entry after commit); on
PostgreSQL the change is also announced to every other process (``ProjectChanges``), which
forgets the project when the notification arrives, milliseconds later. The interval's check
is the safety net for a lost notification: one read per process per interval, however many
projects (the submit benchmark spreads its tasks over 1,000). The dispatcher's limit does not
go through this cache: its statements read ``max_concurrent`` themselves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from orchestration_service.config import Settings
from orchestration_service.domain.errors import NotFound, ProjectArchived
from orchestration_service.repositories.ports import Storage
from orchestration_service.repositories.projects import SETTING_NAMES, ProjectRecord
from orchestration_service.services.lifecycle import utcnow

log = logging.getLogger(__name__)

CACHE_ENTRIES = 10_000  # projects remembered at most; beyond, the cache starts afresh


def configured(settings: Settings) -> dict[str, Any]:
    """The configuration's value of each project setting (None: the routing decides)."""
    tm = settings.task_management
    return {
        "max_concurrent": tm.max_concurrent_per_project,
        "default_priority": tm.default_priority.value,
        "default_qa_profile": None,
        "timeout_default_seconds": tm.timeout_default_seconds,
        "max_attempts_default": tm.max_attempts_default,
    }


def effective(project: ProjectRecord | None, settings: Settings) -> dict[str, dict[str, Any]]:
    """Each setting's value in effect and where it comes from: ``project`` (its own),
    ``configuration`` (task_management), or ``routing`` (no QA profile set anywhere: the
    routing rules choose one per task)."""
    fallback = configured(settings)
    out: dict[str, dict[str, Any]] = {}
    for name in SETTING_NAMES:
        own = getattr(project, name) if project is not None else None
        if own is not None:
            out[name] = {"value": own, "source": "project"}
        elif fallback[name] is not None:
            out[name] = {"value": fallback[name], "source": "configuration"}
        else:
            out[name] = {"value": None, "source": "routing"}
    return out


def new_project(project_id: str, **values: Any) -> ProjectRecord:
    now = utcnow()
    fields: dict[str, Any] = dict.fromkeys(SETTING_NAMES)
    fields.update(name=None, description=None, constitution_version=None)
    fields.update(values)
    return ProjectRecord(project_id=project_id, created_at=now, updated_at=now, archived_at=None, **fields)


class ProjectDirectory:
    """The projects a submission lands in: created on first use (``projects.auto_create``),
    refused when archived, their settings cached briefly."""

    def __init__(
        self, storage: Storage, settings: Settings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.storage = storage
        self.auto_create = settings.projects.auto_create
        self.ttl = settings.projects.cache_seconds
        self.clock = clock
        self._cache: dict[str, ProjectRecord] = {}
        # Cached projects with no row yet: their next submission writes it (auto_create).
        self._unsaved: set[str] = set()
        self._generation: int | None = None
        self._checked_at = -float("inf")
        self._changes = storage.project_changes()
        self._deaf = False  # listening failed (warned once until it works again)

    def forget(self, project_id: str) -> None:
        self._cache.pop(project_id, None)
        self._unsaved.discard(project_id)

    async def listen(self) -> None:
        """Hear the other processes' changes (again, after a lost connection)."""
        try:
            await self._changes.listen(self.forget)
        except Exception as exc:  # the interval's check still bounds how stale the cache gets
            if not self._deaf:
                log.warning("projects: not listening for changes of other processes: %s", exc)
            self._deaf = True
        else:
            self._deaf = False

    async def changed(self, project_id: str) -> None:
        """A change of the project has committed here: forget it, and tell the others."""
        self.forget(project_id)
        try:
            await self._changes.announce(project_id)
        except Exception as exc:
            log.warning(
                "projects: other processes see the change of %s within their interval: %s", project_id, exc
            )

    async def close(self) -> None:
        await self._changes.close()

    def unsaved(self, project_id: str) -> bool:
        """Whether a submission to the project must write its row (it has none yet)."""
        return project_id in self._unsaved

    def saved(self, project_id: str) -> None:
        """A submission wrote the project's row (or found one)."""
        self._unsaved.discard(project_id)

    async def _check_generation(self) -> None:
        now = self.clock()
        if now - self._checked_at < self.ttl:
            return
        # Set first: the submissions arriving meanwhile use the cache as it is (it was right
        # an interval ago) instead of each reading the number too.
        self._checked_at = now
        await self.listen()  # a no-op while listening
        try:
            async with self.storage.read() as uow:
                generation = await uow.projects.generation()
        except BaseException:
            self._checked_at = -float("inf")
            raise
        if generation != self._generation:
            self._cache.clear()
            self._unsaved.clear()
            self._generation = generation

    async def for_submission(self, project_id: str) -> ProjectRecord:
        """The project a new task goes to; NotFound (auto_create off) or ProjectArchived."""
        await self._check_generation()
        project = self._cache.get(project_id)
        if project is None:
            project = await self._load(project_id)
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache.clear()
                self._unsaved.clear()
            self._cache[project_id] = project
        if project.archived_at is not None:
            raise ProjectArchived(f"project {project_id} is archived: it takes no new tasks")
        return project

    async def _load(self, project_id: str) -> ProjectRecord:
        project = await self.storage.task_hot_paths.project(project_id)
        if project is not None:
            return project
        if not self.auto_create:
            raise NotFound(f"project {project_id} does not exist (projects.auto_create is off)")
        # Created with the first submission, in its statement: no transaction of its own.
        self._unsaved.add(project_id)
        return new_project(project_id)
