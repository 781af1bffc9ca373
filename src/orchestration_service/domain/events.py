"""DATS event names and the CloudEvents 1.0 envelope this service writes and reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestration_service.domain.ids import uuid7

SOURCE = "/orchestration-service"
TYPE_PREFIX = "dats."
SPECVERSION = "1.0"
CONTENT_TYPE = "application/cloudevents+json"

# Exchanges (topic) and which events go where.
TASK_EXCHANGE = "task.events"
QA_EXCHANGE = "qa.events"
CASCADE_EXCHANGE = "cascade.events"
EXCHANGES = (TASK_EXCHANGE, QA_EXCHANGE, CASCADE_EXCHANGE)

# Published
TASK_CREATED = "task.created"
TASK_READY_PREFIX = "task.ready."  # + tier
TASK_CANCELLED = "task.cancelled"
TASK_COMPLETED = "task.completed"
TASK_FAILED = "task.failed"
TASK_STATUS_PREFIX = "task.status."  # + new state
ARTIFACT_TAINTED = "artifact.tainted"
ARTIFACT_SUSPECT = "artifact.suspect"
REVIEW_COMPLETED = "review.completed"  # also consumed: a review UI of another team decides
# The fixed names (task.ready.<tier> and task.status.<state> are families: the prefixes above).
PUBLISHED_EVENTS: tuple[str, ...] = (
    TASK_CREATED,
    TASK_CANCELLED,
    TASK_COMPLETED,
    TASK_FAILED,
    ARTIFACT_TAINTED,
    ARTIFACT_SUSPECT,
    REVIEW_COMPLETED,
)

# Consumed
TASK_OUTPUT_CREATED = "task.output.created"
TASK_VALIDATED = "task.validated"
TASK_REJECTED = "task.rejected"
ROLLBACK_REQUESTED = "rollback.requested"
REVIEW_REQUESTED = "review.requested"
# A worker's heartbeat: progress of a running attempt (kept on the task, no history row).
TASK_PROGRESS = "task.progress"

CONSUMED_EVENTS: tuple[str, ...] = (
    TASK_OUTPUT_CREATED,
    TASK_VALIDATED,
    TASK_REJECTED,
    TASK_FAILED,
    ROLLBACK_REQUESTED,
    REVIEW_REQUESTED,
    REVIEW_COMPLETED,
    TASK_PROGRESS,
)
# Where each consumed event may arrive from (the design disagrees on QA's exchange,
# so QA's events are bound from both).
CONSUMED_BINDINGS: tuple[tuple[str, str], ...] = (
    (TASK_EXCHANGE, TASK_OUTPUT_CREATED),
    (TASK_EXCHANGE, TASK_VALIDATED),
    (TASK_EXCHANGE, TASK_REJECTED),
    (TASK_EXCHANGE, TASK_FAILED),
    (TASK_EXCHANGE, TASK_PROGRESS),
    (QA_EXCHANGE, TASK_VALIDATED),
    (QA_EXCHANGE, TASK_REJECTED),
    (CASCADE_EXCHANGE, ROLLBACK_REQUESTED),
    (QA_EXCHANGE, REVIEW_REQUESTED),
    # Our own review.completed comes back on this binding too: ignored by its source.
    (QA_EXCHANGE, REVIEW_COMPLETED),
)


# Heartbeats: many, and only the latest of a task matters. On RabbitMQ they have a queue of
# their own, bounded (the oldest dropped when full), so they never queue in front of the
# events that move tasks.
HEARTBEAT_EVENTS: frozenset[str] = frozenset({TASK_PROGRESS})


def exchange_for(event_name: str) -> str:
    if event_name.startswith("artifact.") or event_name.startswith("rollback."):
        return CASCADE_EXCHANGE
    if event_name.startswith("review."):
        return QA_EXCHANGE
    return TASK_EXCHANGE


def event_name_of(ce_type: str) -> str:
    """``dats.task.created`` -> ``task.created`` (other prefixes are kept as they are)."""
    return ce_type[len(TYPE_PREFIX) :] if ce_type.startswith(TYPE_PREFIX) else ce_type


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class OutgoingEvent:
    """An event the service will publish once its transaction commits."""

    name: str
    data: dict[str, Any]
    subject: str | None = None
    project_id: str | None = None
    id: str = field(default_factory=lambda: str(uuid7()))
    time: str = field(default_factory=now_rfc3339)
    traceparent: str | None = None

    @property
    def exchange(self) -> str:
        return exchange_for(self.name)

    def envelope(self) -> dict[str, Any]:
        env: dict[str, Any] = {
            "specversion": SPECVERSION,
            "type": TYPE_PREFIX + self.name,
            "source": SOURCE,
            "id": self.id,
            "time": self.time,
            "datacontenttype": "application/json",
        }
        if self.subject is not None:
            env["subject"] = self.subject
        if self.traceparent:
            env["traceparent"] = self.traceparent
        env["data"] = self.data
        return env
