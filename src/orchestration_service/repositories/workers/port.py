"""What the fleet use cases may ask of storage: workers seen, their task attempts, and the
fleet's reads of the task table (queues per tier, recent failures)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class WorkerSummary:
    worker_id: str
    first_seen: datetime
    last_seen: datetime
    tiers: tuple[str, ...]
    models: tuple[str, ...]
    in_flight: int
    completed: int
    failed: int
    rejected: int


@dataclass(frozen=True, slots=True)
class AttemptSeen:
    """A worker reported on a task's attempt (``WorkerRepository.record_attempts``)."""

    task_id: uuid.UUID
    attempt: int
    worker_id: str
    project_id: str
    tier: str | None


@dataclass(frozen=True, slots=True)
class WorkerPage:
    rows: Sequence[WorkerSummary]
    total: int


@dataclass(frozen=True, slots=True)
class TierCount:
    tier: str | None  # None: not routed yet
    status: str
    count: int
    oldest_created_at: datetime | None


@dataclass(frozen=True, slots=True)
class FailureFilter:
    project_ids: Sequence[str] | None = None  # None: every project
    tier: str | None = None
    reason: str | None = None  # the failure reason starts with this


@dataclass(frozen=True, slots=True)
class FailurePage:
    rows: Sequence[dict[str, Any]]  # id, project_id, tier, domain, attempt, error, completed_at …
    total: int
    total_capped: bool
    has_more: bool


class WorkerRepository(Protocol):
    async def touch(self, worker_id: str, at: datetime) -> None:
        """The worker was seen at ``at``: insert it, or move its last_seen forward."""
        ...

    async def record_attempt(
        self,
        *,
        task_id: uuid.UUID,
        attempt: int,
        worker_id: str,
        project_id: str,
        tier: str | None,
        model: str | None,
        at: datetime,
        outcome: str | None = None,
    ) -> None:
        """The worker reported on this attempt of the task (insert or update its row; a
        known outcome is never cleared, a later worker of the same attempt takes it over)."""
        ...

    async def record_attempts(self, rows: Sequence[AttemptSeen], at: datetime) -> None:
        """``record_attempt`` (no model, no outcome) of attempts of distinct (task, attempt), in
        one statement: a batch of heartbeats."""
        ...

    async def touch_many(self, worker_ids: Sequence[str], at: datetime) -> None:
        """``touch`` of distinct workers in one statement."""
        ...

    async def set_outcome(self, task_id: uuid.UUID, attempt: int, outcome: str, at: datetime) -> bool:
        """Close the attempt (completed | failed | rejected) if a worker reported on it."""
        ...

    async def page(self, project_ids: Sequence[str] | None, *, limit: int, offset: int = 0) -> WorkerPage:
        """Workers, most recently seen first. With ``project_ids``, only what those projects'
        attempts tell: workers that worked on them, seen and counted from their rows alone."""
        ...

    async def tier_counts(self, project_ids: Sequence[str] | None) -> Sequence[TierCount]:
        """Tasks pending, running and validating per tier, and the oldest of each."""
        ...

    async def failures(
        self,
        f: FailureFilter,
        *,
        limit: int,
        offset: int = 0,
        after: tuple[datetime, uuid.UUID] | None = None,
        cap: int,
    ) -> FailurePage:
        """Failed tasks, the most recently failed first; ``after`` is the keyset cursor."""
        ...
