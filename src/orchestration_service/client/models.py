"""Typed answers of the API, written by hand and checked against ``contracts/openapi.yaml``
(tests/unit/test_client_models.py: every model has exactly its schema's fields, and requires
only what the schema requires).

Why checked, not generated: the generated code of a 4,000-line document is large, renames
things after the generator's taste and changes with the generator's version; these models
are short, read like the API docs, and the test fails the moment the document and a model
disagree. They keep unknown fields (``extra="allow"``), so a newer server never breaks an
older client; enums are plain strings for the same reason.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# The task states after which nothing changes (domain.lifecycle.FINAL_STATES; a unit test
# keeps the two equal, since this package imports nothing of the server).
FINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})


class Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Health(Model):
    status: str
    version: str
    timestamp: datetime


class Artifact(Model):
    id: str
    type: str | None = None
    path: str | None = None


class SubtaskSummary(Model):
    task_id: str
    status: str
    description: str
    depends_on: list[str] = []


class TaskProgress(Model):
    value: float | None = None
    message: str | None = None
    worker_id: str | None = None
    attempt: int | None = None
    at: datetime


class TaskAccepted(Model):
    task_id: str
    project_id: str
    status: str
    created_at: datetime
    estimated_completion: datetime


class Task(Model):
    """A task's document (schema ``TaskDocument``)."""

    task_id: str
    project_id: str
    description: str
    status: str
    priority: str
    mode: str | None
    domain: str | None
    tier: str | None
    qa_profile: str | None
    attempt: int
    max_attempts: int
    timeout_seconds: int
    options: dict[str, Any]
    parent_id: str | None
    depends_on: list[str] = []
    subtasks: list[SubtaskSummary] = []
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    deadline_at: datetime | None
    execution_time_ms: int | None
    artifacts: list[Artifact] = []
    provenance_id: str | None
    routing: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    progress: TaskProgress | None = None

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


class Page(Model):
    total: int
    total_capped: bool = False
    limit: int
    offset: int
    next_cursor: str | None = None


class TaskPage(Page):
    items: list[Task]


class HistoryEntry(Model):
    id: int
    task_id: str
    from_: str | None = Field(None, alias="from")
    to: str
    reason: str | None
    cause: str | None
    attempt: int | None
    details: dict[str, Any] | None
    time: datetime


class TaskHistory(Model):
    task_id: str
    items: list[HistoryEntry]


class TaskTreeNode(Model):
    task_id: str
    status: str
    description: str
    depends_on: list[str] = []
    children: list[TaskTreeNode] = []


class TaskTree(TaskTreeNode):
    subtask_count: int
    truncated: bool


class ReviewSummary(Model):
    review_id: str
    task_id: str
    project_id: str
    status: str
    attempt: int
    reason: str | None = None
    qa_review_id: str | None = None
    qa_result_id: str | None = None
    requested_at: datetime
    decision: str | None = None
    reviewer: str | None = None
    decision_text: str | None = None
    decided_at: datetime | None = None
    decided_via: str | None = None
    closed_reason: str | None = None
    task_description: str | None = None


class Review(ReviewSummary):
    """A review with its task, the output and the QA findings (schema ``ReviewDocument``)."""

    task: Task
    output: Any = None
    artifacts: list[dict[str, Any]] = []
    qa_artifacts: list[dict[str, Any]] = []
    checklist: Any = None
    details: dict[str, Any] | None = None


class ReviewPage(Page):
    items: list[ReviewSummary]


class ProvenanceRecord(Model):
    id: str
    task_id: str
    project_id: str
    status: str
    model_used: str | None
    worker_id: str | None
    tier: str | None
    domain: str | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    tokens_input: int | None
    tokens_output: int | None
    execution_time_ms: int | None
    confidence: float | None
    verification_status: str
    is_tainted: bool
    tainted_at: datetime | None
    tainted_reason: str | None
    tainted_by: str | None
    is_suspect: bool
    suspect_since: datetime | None
    suspect_source: str | None
    outputs: list[dict[str, Any]]
    inputs: list[dict[str, Any]]
    inputs_consumed: list[str]
    execution: dict[str, Any]
    verification: dict[str, Any]
    metrics: dict[str, Any]


class ProvenancePage(Page):
    items: list[ProvenanceRecord]


class GraphRecord(Model):
    id: str
    task_id: str
    project_id: str
    created_at: datetime
    verification_status: str
    is_tainted: bool
    is_suspect: bool
    artifact_ids: list[str]
    depth: int


class Lineage(Model):
    provenance_id: str
    artifact_ids: list[str]
    depth_limit: int
    max_depth: int
    truncated: bool
    total: int
    limit: int
    items: list[GraphRecord]


class Impact(Model):
    provenance_id: str
    artifact_id: str
    artifact_ids: list[str]
    direct_dependents: list[str]
    transitive_dependents: list[str]
    total_affected: int
    depth_limit: int
    max_depth: int
    truncated: bool
    limit: int
    items: list[GraphRecord]
    tasks_in_flight: list[dict[str, Any]]
    in_flight_by_project: dict[str, Any]


class Worker(Model):
    worker_id: str
    first_seen: datetime
    last_seen: datetime
    stale: bool
    tiers: list[str]
    models: list[str]
    in_flight: int
    completed: int
    failed: int
    rejected: int


class WorkerList(Model):
    items: list[Worker]
    total: int
    limit: int
    offset: int
    stale_after_seconds: float


class TierQueue(Model):
    tier: str | None
    pending: int
    running: int
    validating: int
    oldest_waiting_seconds: float | None
    broker: dict[str, Any] | None


class QueueList(Model):
    items: list[TierQueue]
    broker: dict[str, Any]


class Failure(Model):
    task_id: str
    project_id: str
    description: str
    tier: str | None
    domain: str | None
    attempt: int
    max_attempts: int
    parent_id: str | None
    reason: str | None
    error: Any
    created_at: datetime
    failed_at: datetime | None


class FailurePage(Page):
    items: list[Failure]


class DeadLetter(Model):
    id: str
    event_id: str | None
    event_type: str | None
    source: str
    kind: str
    reason: str
    project_id: str | None
    payload: str
    payload_truncated: bool
    created_at: datetime
    replays: int
    last_replayed_at: datetime | None


class DeadLetterPage(Page):
    items: list[DeadLetter]


class EventResult(Model):
    """The ingress's answer to one CloudEvent: ``processed``, ``duplicate`` or ``ignored``."""

    id: str
    type: str
    outcome: str
    detail: str


class FeedEvent(Model):
    """One event of an SSE feed: its ``id`` (the position to resume from), the SSE event
    name and the decoded data (for the event feed: the CloudEvent)."""

    id: str | None
    event: str
    data: Any


class DetailedHealth(Model):
    """Each dependency: connected, degraded, unconfigured or disconnected."""

    status: str
    version: str
    timestamp: datetime
    dependencies: dict[str, str]
    details: dict[str, Any] = {}


class TaintEvent(Model):
    """One entry of the taint audit trail: ``action`` taint, suspect or clear."""

    id: str
    timestamp: datetime
    artifact_id: str
    provenance_id: str | None
    reason: str
    source_artifact_id: str | None
    source_provenance_id: str | None
    cascade_depth: int
    cascade_id: str
    action: str
    project_id: str | None


class TaintEventPage(Page):
    items: list[TaintEvent]


class RootCause(Model):
    failed_artifact_id: str
    failed_provenance_id: str
    immediate_cause: str | None
    immediate_cause_provenance_id: str | None
    root_cause: str | None
    root_cause_provenance_id: str | None
    path: list[str]
    path_provenance_ids: list[str]
    depth: int


class TaintResult(Model):
    """A taint cascade's outcome; ``already_applied``: its cascade id was applied before
    (a retry, or a repeat), so nothing changed."""

    cascade_id: str
    provenance_ids: list[str]
    artifact_ids: list[str]
    tainted_count: int
    suspect_count: int
    max_depth: int
    events_published: int
    already_applied: bool


class ClearSuspectResult(Model):
    """``cleared`` is False when the record was not suspect (nothing changed)."""

    provenance_id: str
    cleared: bool
    cascade_id: str | None
    artifact_ids: list[str]


class ReplayResult(Model):
    """A dead letter replayed: ``processed``, ``duplicate`` or ``ignored`` (the letter is
    gone), or ``dead_lettered`` (refused again: ``kind`` and ``reason`` say why; it stays)."""

    id: str
    outcome: str
    detail: str
    kind: str | None
    reason: str | None


class DiscardResult(Model):
    id: str
    outcome: str
