"""Shapes of the fleet routes: workers, queues, failures, dead letters (OpenAPI)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from orchestration_service.domain.paging import LIST_TOTAL_CAP


class Worker(BaseModel):
    worker_id: str
    first_seen: datetime
    last_seen: datetime
    stale: bool = Field(description="Unseen for longer than `stale_after_seconds`.")
    tiers: list[str]
    models: list[str]
    in_flight: int = Field(description="Tasks it reported on that are still in flight on that attempt.")
    completed: int
    failed: int
    rejected: int = Field(description="Attempts rejected by QA.")


class WorkerList(BaseModel):
    items: list[Worker]
    total: int
    limit: int
    offset: int
    stale_after_seconds: float


class BrokerQueueFigures(BaseModel):
    name: str
    exists: bool
    messages: int | None
    consumers: int | None


class BrokerTier(BaseModel):
    messages: int
    consumers: int
    queues: list[BrokerQueueFigures]


class TierQueue(BaseModel):
    tier: str | None = Field(description="A tier, or `unrouted` (pending, no tier decided yet).")
    pending: int
    running: int
    validating: int
    oldest_waiting_seconds: float | None = Field(description="Age of the oldest pending task.")
    broker: BrokerTier | None = Field(
        description="The broker's queues bound to task.ready.{tier}; null when not applicable or unknown."
    )


class BrokerSource(BaseModel):
    source: Literal["management-api", "passive-declare", "not-applicable"]
    error: str | None


class QueueList(BaseModel):
    items: list[TierQueue]
    broker: BrokerSource


class Failure(BaseModel):
    task_id: uuid.UUID
    project_id: str
    description: str
    tier: str | None
    domain: str | None
    attempt: int
    max_attempts: int
    parent_id: uuid.UUID | None
    reason: str | None = Field(description="Why it failed (`timeout`, `worker failed`, `rejected: …`).")
    error: Any = Field(description="The failure's detail as recorded.")
    created_at: datetime
    failed_at: datetime | None


class _Page(BaseModel):
    total: int = Field(description=f"Matches, counted up to {LIST_TOTAL_CAP:,} (see `total_capped`).")
    total_capped: bool
    limit: int
    offset: int
    next_cursor: str | None


class FailurePage(_Page):
    items: list[Failure]


class DeadLetterDoc(BaseModel):
    id: uuid.UUID
    event_id: str | None
    event_type: str | None
    source: Literal["broker", "ingress"]
    kind: str = Field(description="Why, in a word: malformed, schema, unknown-type, unknown-task, crash …")
    reason: str
    project_id: str | None
    payload: str = Field(description="The event as received (cut at the configured size).")
    payload_truncated: bool
    created_at: datetime
    replays: int
    last_replayed_at: datetime | None


class DeadLetterPage(_Page):
    items: list[DeadLetterDoc]


class ReplayResult(BaseModel):
    id: uuid.UUID
    outcome: Literal["processed", "duplicate", "ignored", "dead_lettered"]
    detail: str
    kind: str | None
    reason: str | None


class DiscardResult(BaseModel):
    id: uuid.UUID
    outcome: Literal["discarded"]
