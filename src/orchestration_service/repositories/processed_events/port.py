"""What the use cases may ask of the record of consumed events, keyed by (project,
CloudEvent id).

The project is the event's own (its task's, or its rollback's): a sender of one project
cannot claim an id first and so make another project's event a "duplicate", nor learn from
a "duplicate" answer that another project used an id.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol


class ProcessedEventRepository(Protocol):
    async def claim(
        self, project_id: str, event_id: str, event_type: str, source: str | None, outcome: str
    ) -> bool:
        """Record the event as processed; False when it already was (a duplicate). Runs in
        the unit of work of the event's effects, so a rollback un-claims it."""
        ...

    async def set_outcome(self, project_id: str, event_id: str, outcome: str) -> None: ...

    async def get_outcome(self, project_id: str, event_id: str) -> str | None: ...

    async def purge_before(self, retention: timedelta, limit: int = 10_000) -> int:
        """Forget ids claimed longer than ``retention`` ago, at most ``limit`` per call."""
        ...
