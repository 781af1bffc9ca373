"""One exception tree for the whole service; the HTTP edge renders it as problem+json.

Each kind has a stable ``type`` URN. Clients branch on ``type``, never on ``title``.
"""

from __future__ import annotations

from typing import Any

PROBLEM_BASE = "urn:dats:orchestration:problem:"


class OrchestrationError(Exception):
    status: int = 500
    kind: str = "internal-error"
    title: str = "Internal server error"

    def __init__(self, detail: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.kind


class BadRequest(OrchestrationError):
    status, kind, title = 400, "bad-request", "Malformed request"


class Unauthorized(OrchestrationError):
    status, kind, title = 401, "unauthorized", "Authentication required"


class Forbidden(OrchestrationError):
    status, kind, title = 403, "forbidden", "Not allowed"


class CrossSiteRequest(Forbidden):
    kind, title = "cross-site-request", "Cross-site request refused"


class NotFound(OrchestrationError):
    status, kind, title = 404, "not-found", "Resource not found"


class Conflict(OrchestrationError):
    status, kind, title = 409, "conflict", "Conflict with the current state"


class InvalidTransition(Conflict):
    kind, title = "invalid-transition", "Transition not allowed"


class IdempotencyConflict(Conflict):
    kind, title = "idempotency-key-reused", "Idempotency key reused with a different request"


class PayloadTooLarge(OrchestrationError):
    status, kind, title = 413, "payload-too-large", "Request body too large"


class UnsupportedMediaType(OrchestrationError):
    status, kind, title = 415, "unsupported-media-type", "Unsupported media type"


class ValidationFailed(OrchestrationError):
    status, kind, title = 422, "validation-error", "Request validation failed"


class ServiceUnavailable(OrchestrationError):
    status, kind, title = 503, "service-unavailable", "Service unavailable"


class StreamsBusy(ServiceUnavailable):
    """Every stream slot of this process is taken: the client retries after ``retry_after``."""

    kind, title = "too-many-streams", "Too many open streams"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, extra={"retry_after": retry_after})
        self.headers = {"Retry-After": str(retry_after)}


class EventRejected(Exception):
    """An event that can never be applied. ``kind``: malformed | schema | unknown-type |
    unknown-task | unknown-record. Over HTTP: 400 for malformed, 422 otherwise."""

    def __init__(self, kind: str, reason: str, *, field: str | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.field = field


class ProjectExists(Conflict):
    kind, title = "project-exists", "The project already exists"


class ProjectArchived(Conflict):
    kind, title = "project-archived", "The project is archived"


class ProjectBusy(Conflict):
    kind, title = "project-busy", "The project has tasks in flight"
