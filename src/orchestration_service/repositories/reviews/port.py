"""What the use cases may ask of the review store.

Every write to a review happens with its task's row locked (the use cases lock the task
first), so a review's status and its task's state change together."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

OPEN = "open"
DECIDED = "decided"
CLOSED = "closed"  # the task left review without a decision (cancelled, failed)


@dataclass(frozen=True, slots=True)
class ReviewRecord:
    id: uuid.UUID
    task_id: uuid.UUID
    project_id: str
    status: str
    attempt: int  # the task's attempt whose output is under review
    qa_review_id: str | None
    qa_result_id: str | None
    reason: str | None
    request: dict[str, Any]  # artifacts, checklist, details as QA sent them
    requested_at: datetime
    decision: str | None = None
    reviewer: str | None = None
    decision_text: str | None = None
    decided_at: datetime | None = None
    decided_via: str | None = None
    closed_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ReviewFilter:
    project_ids: Sequence[str] | None = None  # None: every project
    status: str | None = None


class ReviewRepository(Protocol):
    async def insert(self, review: ReviewRecord) -> None: ...

    async def get(self, review_id: uuid.UUID) -> ReviewRecord | None: ...

    async def open_for_task(self, task_id: uuid.UUID) -> ReviewRecord | None:
        """The task's open review (there is at most one)."""
        ...

    async def decide(
        self,
        review_id: uuid.UUID,
        *,
        decision: str,
        reviewer: str,
        text: str | None,
        at: datetime,
        via: str,
    ) -> bool:
        """Record the decision of an open review; False if it is not open (decided once)."""
        ...

    async def close_open(self, task_ids: Sequence[uuid.UUID], *, reason: str, at: datetime) -> int:
        """Close the open reviews of these tasks without a decision; how many were open."""
        ...

    async def find(
        self,
        f: ReviewFilter,
        *,
        limit: int,
        offset: int = 0,
        after: tuple[datetime, uuid.UUID] | None = None,
    ) -> Sequence[ReviewRecord]:
        """A page, oldest request first (the queue's order); ``after``: a keyset position."""
        ...

    async def count(self, f: ReviewFilter, *, cap: int | None = None) -> int:
        """How many match, counted up to ``cap`` + 1."""
        ...
