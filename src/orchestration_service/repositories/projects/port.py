"""Projects and their constitutions: the port and its typed records."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

# A project's own settings, each None when it falls back to the configuration.
SETTING_NAMES = (
    "max_concurrent",
    "default_priority",
    "default_qa_profile",
    "timeout_default_seconds",
    "max_attempts_default",
)


@dataclass(slots=True)
class ProjectRecord:
    project_id: str
    name: str | None
    description: str | None
    max_concurrent: int | None
    default_priority: str | None
    default_qa_profile: str | None
    timeout_default_seconds: int | None
    max_attempts_default: int | None
    constitution_version: int | None
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None


@dataclass(slots=True)
class Constitution:
    project_id: str
    version: int
    text: str
    sha256: str
    created_at: datetime
    created_by: str | None


class ProjectRepository(Protocol):
    async def add(self, project: ProjectRecord) -> bool:
        """Insert the project; False (nothing written) when one with its id exists."""
        ...

    async def get(self, project_id: str, *, for_update: bool = False) -> ProjectRecord | None: ...

    async def list(
        self, *, include_archived: bool, project_ids: Sequence[str] | None = None
    ) -> list[ProjectRecord]:
        """Projects by id; archived ones only with ``include_archived``; within
        ``project_ids`` when given."""
        ...

    async def update(self, project_id: str, values: Mapping[str, Any]) -> None: ...

    async def generation(self) -> int:
        """A number that moves whenever ``changed`` is called (0 before the first change)."""
        ...

    async def changed(self) -> None:
        """Note that a project's settings or archive state changed (raises ``generation``)."""
        ...

    async def add_constitution(self, constitution: Constitution) -> None: ...

    async def constitution(self, project_id: str, version: int) -> Constitution | None: ...

    async def current_constitutions(self, project_ids: Sequence[str]) -> dict[str, Constitution]:
        """Each project's current constitution (projects without one are left out)."""
        ...


class ProjectChanges(Protocol):
    """Word between processes that a project's settings or archive state changed, so each
    process's submit-path cache forgets it at once instead of at its next interval."""

    async def listen(self, on_change: Callable[[str], None]) -> None:
        """From now on call ``on_change(project_id)`` when any process announces a change.
        Idempotent: called again after the connection was lost, it listens anew."""
        ...

    async def announce(self, project_id: str) -> None:
        """Tell every listening process (after the change has committed)."""
        ...

    async def close(self) -> None: ...
