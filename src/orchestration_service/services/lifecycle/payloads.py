"""Every event this service publishes about a task, built here and only here: the lifecycle
steps and the event handlers call these (docs/integrating/events.md and the AsyncAPI file describe
them)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from orchestration_service.domain import events as ev


def _time(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _parent(task: Mapping[str, Any]) -> str | None:
    return str(task["parent_id"]) if task.get("parent_id") else None


def _about(task: Mapping[str, Any], name: str, data: dict[str, Any]) -> ev.OutgoingEvent:
    """An event about ``task``: its id is the subject, and every payload starts with the task's
    and the project's ids."""
    return ev.OutgoingEvent(
        name=name,
        subject=str(task["id"]),
        project_id=task["project_id"],
        data={"task_id": str(task["id"]), "project_id": task["project_id"], **data},
    )


def status_changed(
    task: Mapping[str, Any], from_status: str | None, to_status: str, reason: str, now: datetime
) -> ev.OutgoingEvent:
    """``task.status.<state>``: every transition, creation included."""
    return _about(
        task,
        ev.TASK_STATUS_PREFIX + to_status,
        {
            "parent_id": _parent(task),
            "from": from_status,
            "to": to_status,
            "reason": reason,
            "attempt": task.get("attempt", 0),
            "time": _time(now),
        },
    )


def created(task: Mapping[str, Any]) -> ev.OutgoingEvent:
    """``task.created``."""
    return _about(
        task,
        ev.TASK_CREATED,
        {"description": task["description"], "priority": task["priority"], "parent_id": _parent(task)},
    )


def ready(
    task: Mapping[str, Any],
    *,
    tier: str,
    attempt: int,
    context: dict[str, Any],
    feedback: Any,
    deadline: datetime,
    constitution: dict[str, Any] | None = None,
) -> ev.OutgoingEvent:
    """``task.ready.<tier>``: an attempt starts; the workers of that tier take it, with the
    project's constitution (or the task's override) when there is one."""
    return _about(
        task,
        ev.TASK_READY_PREFIX + tier,
        {
            "description": task["description"],
            "domain": task["domain"],
            "tier": tier,
            "mode": task["mode"],
            "qa_profile": task["qa_profile"],
            "attempt": attempt,
            "context": context,
            "feedback": feedback,
            "deadline": _time(deadline),
            "constitution": constitution,
        },
    )


def completed(task: Mapping[str, Any], provenance_id: str | None, artifacts: list[Any]) -> ev.OutgoingEvent:
    """``task.completed``: validated by QA, or (a decomposed parent) all subtasks done."""
    return _about(task, ev.TASK_COMPLETED, {"provenance_id": provenance_id, "artifacts": artifacts})


def failed(task: Mapping[str, Any], error: Any, reason: str) -> ev.OutgoingEvent:
    """``task.failed``, for failures this service decides."""
    return _about(task, ev.TASK_FAILED, {"error": error, "reason": reason})


def cancelled(task: Mapping[str, Any], reason: str) -> ev.OutgoingEvent:
    """``task.cancelled``."""
    return _about(task, ev.TASK_CANCELLED, {"reason": reason})


def review_completed(
    task: Mapping[str, Any],
    *,
    review_id: str,
    decision: str,
    text_field: str,
    text: Any,
    reviewer: str,
    decided_at: datetime,
    qa_review_id: str | None,
) -> ev.OutgoingEvent:
    """``review.completed`` (on ``qa.events``): a person decided a review through this service."""
    data: dict[str, Any] = {
        "review_id": review_id,
        "decision": decision,
        "reviewer": reviewer,
        text_field: text,
        "decided_at": _time(decided_at),
    }
    if qa_review_id is not None:
        data["qa_review_id"] = qa_review_id
    return _about(task, ev.REVIEW_COMPLETED, data)
