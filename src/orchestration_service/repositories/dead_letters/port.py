"""What the use cases may ask of the dead-letter store."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: uuid.UUID
    event_id: str | None
    event_type: str | None
    source: str  # broker | ingress
    kind: str
    reason: str
    project_id: str | None
    payload: str
    payload_truncated: bool
    created_at: datetime
    replays: int = 0
    last_replayed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    # None: every dead letter; otherwise only those of these projects (unattributed ones
    # are left out: they may concern any project).
    project_ids: Sequence[str] | None = None
    source: str | None = None
    event_type: str | None = None


@dataclass(frozen=True, slots=True)
class DeadLetterPage:
    rows: Sequence[DeadLetter]
    total: int
    total_capped: bool
    has_more: bool


class DeadLetterRepository(Protocol):
    async def add(self, letter: DeadLetter) -> None: ...

    async def get(self, letter_id: uuid.UUID, *, for_update: bool = False) -> DeadLetter | None: ...

    async def page(
        self,
        f: DeadLetterFilter,
        *,
        limit: int,
        offset: int = 0,
        after: tuple[datetime, uuid.UUID] | None = None,
        cap: int,
    ) -> DeadLetterPage:
        """Newest first; ``after`` is the keyset cursor."""
        ...

    async def replayed(self, letter_id: uuid.UUID, *, kind: str, reason: str, at: datetime) -> None:
        """A replay was still refused: keep the letter with its new reason."""
        ...

    async def delete(self, letter_id: uuid.UUID) -> bool: ...

    async def trim(self, keep: int) -> int:
        """Delete all but the newest ``keep`` letters; how many went."""
        ...
