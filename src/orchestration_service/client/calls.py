"""Each route as a ``Call``: the request and how to read its answer, built once here and run
by either client (``sync.Client`` or ``aio.AsyncClient``). Adding a route is a builder here
and one line in each client.

Also the retry policy both clients share: which failures are retried and how long to wait.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import orjson
from pydantic import BaseModel

from orchestration_service.client import models as m
from orchestration_service.client.errors import ClientError

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    method: str
    path: str
    read: Callable[[Any], T]
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    # Safe to send again after the request may have reached the service: reads, a submission
    # with its idempotency key, a CloudEvent (the service deduplicates on its id).
    idempotent: bool = True

    def request_kwargs(self) -> dict[str, Any]:
        params = {k: _param(v) for k, v in self.params.items() if v is not None}
        kw: dict[str, Any] = {"params": params, "headers": dict(self.headers)}
        if self.body is not None:
            kw["content"] = orjson.dumps(self.body)
            kw["headers"]["content-type"] = self.content_type
        return kw


def _param(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | set | frozenset):
        return [_param(v) for v in value]
    return value


def decode(response: httpx.Response) -> Any:
    """The JSON of a successful answer (None if empty)."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        raise ClientError(
            f"{response.status_code} answer that is not JSON: {response.text[:100]!r}"
        ) from None


def model(cls: type[M]) -> Callable[[Any], M]:
    return cls.model_validate


def raw(doc: Any) -> Any:
    return doc


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries with exponential backoff and full jitter: connection errors and timeouts, 429,
    502, 503 and 504 (a ``Retry-After`` is honoured, up to ``max_delay``). A call that is not
    idempotent is retried only when the request surely did not arrive (connect errors, 429,
    503: the service refused it before doing anything)."""

    attempts: int = 4
    base_delay: float = 0.2
    max_delay: float = 5.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after:
            try:
                return min(self.max_delay, max(0.0, float(retry_after)))
            except ValueError:
                pass
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))

    def retry_status(self, call: Call[Any], status: int) -> bool:
        return status in (429, 503) or (call.idempotent and status in (502, 504))

    def retry_error(self, call: Call[Any], exc: httpx.TransportError) -> bool:
        return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout) or (
            call.idempotent and isinstance(exc, httpx.TimeoutException | httpx.NetworkError)
        )


NO_RETRY = RetryPolicy(attempts=1)


def page(limit: int | None, offset: int | None, cursor: str | None) -> dict[str, Any]:
    return {"limit": limit, "offset": offset, "cursor": cursor}


# --- tasks -------------------------------------------------------------------------------


def submit(
    description: str,
    project_id: str,
    *,
    priority: str | None = None,
    options: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> Call[m.TaskAccepted]:
    body: dict[str, Any] = {"description": description, "project_id": project_id}
    if priority is not None:
        body["priority"] = priority
    if options:
        body["options"] = options
    # One key for every retry of this call: a submission retried after a lost answer
    # returns the first task instead of creating a second one.
    key = idempotency_key or str(uuid.uuid4())
    return Call("POST", "/tasks", model(m.TaskAccepted), body=body, headers={"Idempotency-Key": key})


def get_task(task_id: str) -> Call[m.Task]:
    return Call("GET", f"/tasks/{task_id}", model(m.Task))


def list_tasks(
    *,
    project_id: str | None = None,
    status: str | list[str] | None = None,
    priority: str | None = None,
    created_after: datetime | str | None = None,
    created_before: datetime | str | None = None,
    limit: int | None = None,
    offset: int | None = None,
    cursor: str | None = None,
) -> Call[m.TaskPage]:
    params = {
        "project_id": project_id,
        "status": status,
        "priority": priority,
        "created_after": created_after,
        "created_before": created_before,
        **page(limit, offset, cursor),
    }
    return Call("GET", "/tasks", model(m.TaskPage), params=params)


def cancel_task(task_id: str, reason: str | None = None) -> Call[m.Task]:
    body = {"reason": reason} if reason else {}
    return Call("POST", f"/tasks/{task_id}/cancel", model(m.Task), body=body, idempotent=False)


def retry_task(task_id: str) -> Call[m.Task]:
    return Call("POST", f"/tasks/{task_id}/retry", model(m.Task), idempotent=False)


def task_history(task_id: str) -> Call[m.TaskHistory]:
    return Call("GET", f"/tasks/{task_id}/history", model(m.TaskHistory))


def task_tree(task_id: str) -> Call[m.TaskTree]:
    return Call("GET", f"/tasks/{task_id}/tree", model(m.TaskTree))


# --- reviews -----------------------------------------------------------------------------


def list_reviews(
    *,
    project_id: str | None = None,
    status: str | None = None,
    limit: int | None = None,
    offset: int | None = None,
    cursor: str | None = None,
) -> Call[m.ReviewPage]:
    params = {"project_id": project_id, "status": status, **page(limit, offset, cursor)}
    return Call("GET", "/reviews", model(m.ReviewPage), params=params)


def get_review(review_id: str) -> Call[m.Review]:
    return Call("GET", f"/reviews/{review_id}", model(m.Review))


def decide_review(review_id: str, action: str, body: dict[str, Any]) -> Call[m.Review]:
    """``action``: approve, reject or request-changes (a decided review answers 409)."""
    return Call("POST", f"/reviews/{review_id}/{action}", model(m.Review), body=body, idempotent=False)


# --- provenance --------------------------------------------------------------------------


def get_provenance(record_id: str) -> Call[m.ProvenanceRecord]:
    return Call("GET", f"/provenance/{record_id}", model(m.ProvenanceRecord))


def lineage(record_id: str, *, max_depth: int | None = None, limit: int | None = None) -> Call[m.Lineage]:
    params = {"max_depth": max_depth, "limit": limit}
    return Call("GET", f"/provenance/{record_id}/lineage", model(m.Lineage), params=params)


def impact(record_id: str, *, max_depth: int | None = None, limit: int | None = None) -> Call[m.Impact]:
    params = {"max_depth": max_depth, "limit": limit}
    return Call("GET", f"/provenance/{record_id}/impact", model(m.Impact), params=params)


# --- events, fleet, health ---------------------------------------------------------------


def post_event(envelope: dict[str, Any]) -> Call[m.EventResult]:
    return Call(
        "POST", "/events", model(m.EventResult), body=envelope, content_type="application/cloudevents+json"
    )


def workers(*, limit: int | None = None, offset: int | None = None) -> Call[m.WorkerList]:
    return Call("GET", "/workers", model(m.WorkerList), params={"limit": limit, "offset": offset})


def failures(
    *,
    project_id: str | None = None,
    tier: str | None = None,
    reason: str | None = None,
    limit: int | None = None,
    offset: int | None = None,
    cursor: str | None = None,
) -> Call[m.FailurePage]:
    params = {"project_id": project_id, "tier": tier, "reason": reason, **page(limit, offset, cursor)}
    return Call("GET", "/failures", model(m.FailurePage), params=params)


def dead_letters(
    *,
    project_id: str | None = None,
    source: str | None = None,
    event_type: str | None = None,
    limit: int | None = None,
    offset: int | None = None,
    cursor: str | None = None,
) -> Call[m.DeadLetterPage]:
    params = {"project_id": project_id, "source": source, "event_type": event_type}
    params |= page(limit, offset, cursor)
    return Call("GET", "/dead-letters", model(m.DeadLetterPage), params=params)


def queues() -> Call[m.QueueList]:
    return Call("GET", "/queues", model(m.QueueList))


def health(which: str = "") -> Call[m.Health]:
    """``which``: '' (the process answers), 'live' or 'ready' (503 when not ready)."""
    return Call("GET", "/health" + (f"/{which}" if which else ""), model(m.Health))


def feed_params(
    types: str | list[str] | None, project_id: str | None, subject: str | None, after: int | None
) -> dict[str, Any]:
    return {
        k: v
        for k, v in {"type": types, "project_id": project_id, "subject": subject, "after": after}.items()
        if v is not None
    }


def segment(value: str) -> str:
    """An id as exactly one path segment, whatever it holds (an artifact id may hold ``/``)."""
    return quote(value, safe="")


# --- provenance: queries and writes ------------------------------------------------------
# (which writes are resent after a lost answer, and why: ``project_calls``' docstring)


def list_provenance(
    *,
    project_id: str | None = None,
    task_id: str | None = None,
    artifact_id: str | None = None,
    verification_status: str | None = None,
    is_tainted: bool | None = None,
    is_suspect: bool | None = None,
    model_used: str | None = None,
    worker_id: str | None = None,
    tier: str | None = None,
    domain: str | None = None,
    created_after: datetime | str | None = None,
    created_before: datetime | str | None = None,
    limit: int | None = None,
    offset: int | None = None,
    cursor: str | None = None,
) -> Call[m.ProvenancePage]:
    params = {
        "project_id": project_id,
        "task_id": task_id,
        "artifact_id": artifact_id,
        "verification_status": verification_status,
        "is_tainted": is_tainted,
        "is_suspect": is_suspect,
        "model_used": model_used,
        "worker_id": worker_id,
        "tier": tier,
        "domain": domain,
        "created_after": created_after,
        "created_before": created_before,
        **page(limit, offset, cursor),
    }
    return Call("GET", "/provenance", model(m.ProvenancePage), params=params)


def taint_events(
    *,
    project_id: str | None = None,
    cascade_id: str | None = None,
    provenance_id: str | None = None,
    artifact_id: str | None = None,
    action: str | None = None,
    limit: int | None = None,
    offset: int | None = None,
    cursor: str | None = None,
) -> Call[m.TaintEventPage]:
    params = {
        "project_id": project_id,
        "cascade_id": cascade_id,
        "provenance_id": provenance_id,
        "artifact_id": artifact_id,
        "action": action,
        **page(limit, offset, cursor),
    }
    return Call("GET", "/provenance/taint-events", model(m.TaintEventPage), params=params)


def provenance_by_artifact(artifact_id: str, *, project_id: str | None = None) -> Call[m.ProvenanceRecord]:
    path = f"/provenance/by-artifact/{segment(artifact_id)}"
    return Call("GET", path, model(m.ProvenanceRecord), params={"project_id": project_id})


def root_cause(record_id: str, *, max_depth: int | None = None) -> Call[m.RootCause]:
    return Call(
        "GET", f"/provenance/{record_id}/root-cause", model(m.RootCause), params={"max_depth": max_depth}
    )


def taint(
    record_id: str, reason: str, *, tainted_by: str | None = None, cascade_id: str | None = None
) -> Call[m.TaintResult]:
    """Mark the record tainted and everything downstream suspect, as one cascade."""
    body: dict[str, Any] = {"reason": reason, "cascade_id": cascade_id or str(uuid.uuid4())}
    if tainted_by is not None:
        body["tainted_by"] = tainted_by
    # One cascade id for every try, as ``submit``'s key: the service applies a cascade id
    # once, so a taint retried after a lost answer answers ``already_applied`` with the
    # first cascade's counts instead of starting a second cascade.
    return Call("POST", f"/provenance/{record_id}/taint", model(m.TaintResult), body=body)


def clear_suspect(
    record_id: str, *, reason: str | None = None, cleared_by: str | None = None
) -> Call[m.ClearSuspectResult]:
    body = {k: v for k, v in {"reason": reason, "cleared_by": cleared_by}.items() if v is not None}
    # Not resent: a retry after a clear that went through answers ``cleared: false``.
    path = f"/provenance/{record_id}/clear-suspect"
    return Call("POST", path, model(m.ClearSuspectResult), body=body, idempotent=False)


# --- dead letters, detailed health -------------------------------------------------------


def get_dead_letter(letter_id: str) -> Call[m.DeadLetter]:
    return Call("GET", f"/dead-letters/{letter_id}", model(m.DeadLetter))


def replay_dead_letter(letter_id: str) -> Call[m.ReplayResult]:
    """Run the letter's event through the handlers once more: it goes (``processed``,
    ``duplicate``, ``ignored``) or stays (``dead_lettered``, with the new reason)."""
    # Not resent: a replay that went through removed the letter, so its retry would answer
    # 404 and hide the outcome (and one refused again would count a second replay).
    return Call("POST", f"/dead-letters/{letter_id}/replay", model(m.ReplayResult), idempotent=False)


def discard_dead_letter(letter_id: str) -> Call[m.DiscardResult]:
    # Not resent: a retry after a discard that went through answers 404, as for a letter
    # that never existed.
    return Call("DELETE", f"/dead-letters/{letter_id}", model(m.DiscardResult), idempotent=False)


def health_detailed() -> Call[m.DetailedHealth]:
    """Each dependency's state (503 while one the service needs is down)."""
    return Call("GET", "/health/detailed", model(m.DetailedHealth))
