"""Shapes of the human review: the consumed events (``review.requested``,
``review.completed``) and the API's requests and answers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from orchestration_service.domain.reviews import ReviewDecision
from orchestration_service.schemas.common import NO_NUL
from orchestration_service.schemas.events import Id, NonEmpty, Timestamp
from orchestration_service.schemas.tasks import TaskDocument


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- consumed events (tolerant reader: unknown fields are kept and ignored) --------------
class ReviewRequested(_Tolerant):
    """QA asks a person to decide on a validating task's output."""

    task_id: NonEmpty
    review_id: Id | None = None
    reason: str | None = None
    qa_result_id: Id | None = None
    artifacts: list[dict[str, Any]] | None = None
    checklist: list[Any] | dict[str, Any] | None = None
    details: dict[str, Any] | None = None


class ReviewCompleted(_Tolerant):
    """A decision, from this service (its own echo, ignored) or another team's review UI."""

    task_id: NonEmpty
    decision: ReviewDecision
    review_id: Id | None = None
    reviewer: Id | None = None
    comment: str | None = None
    reason: str | None = None
    feedback: str | dict[str, Any] | None = None
    decided_at: Timestamp | None = None


# -- HTTP requests ---------------------------------------------------------------------
Text = Annotated[str, StringConstraints(max_length=20_000, pattern=NO_NUL)]
Required = Annotated[str, StringConstraints(min_length=1, max_length=20_000, pattern=NO_NUL)]


class Approve(_Strict):
    comment: Text | None = None


class Reject(_Strict):
    reason: Required


class RequestChanges(_Strict):
    feedback: Required


# -- answers ---------------------------------------------------------------------------
ReviewStatus = Literal["open", "decided", "closed"]


class ReviewSummary(BaseModel):
    review_id: uuid.UUID
    task_id: uuid.UUID
    project_id: str
    status: ReviewStatus
    attempt: int = Field(description="The task's attempt whose output is under review.")
    reason: str | None = Field(None, description="Why QA asked for a person.")
    qa_review_id: str | None = None
    qa_result_id: str | None = None
    requested_at: datetime
    decision: ReviewDecision | None = None
    reviewer: str | None = None
    decision_text: str | None = Field(None, description="The comment, reason or feedback given.")
    decided_at: datetime | None = None
    decided_via: str | None = Field(None, description="`api`, or the event that decided it.")
    closed_reason: str | None = Field(None, description="Why it closed without a decision.")
    task_description: str | None = None


class ReviewDocument(ReviewSummary):
    task: TaskDocument
    output: Any = Field(None, description="The worker's output.")
    artifacts: list[dict[str, Any]] = Field(default_factory=list, description="The worker's artifacts.")
    qa_artifacts: list[dict[str, Any]] = Field(default_factory=list, description="Artifacts QA named.")
    checklist: Any = None
    details: dict[str, Any] | None = None


class ReviewPage(BaseModel):
    items: list[ReviewSummary]
    total: int = Field(description="Reviews matching the filters, counted up to 10,000.")
    total_capped: bool = False
    limit: int
    offset: int
    next_cursor: str | None = None
