"""problem+json answers as exceptions: one class per kind of failure a program handles
differently, each carrying the problem's ``type``, ``title``, ``status`` and ``detail``."""

from __future__ import annotations

from typing import Any

import httpx


class ClientError(Exception):
    """Anything this library raises."""


class TransportFailed(ClientError):
    """The service could not be reached (or did not answer in time) after the retries."""


class ApiError(ClientError):
    """The service answered with an error (RFC 9457 problem+json, or a bare status)."""

    def __init__(
        self, status: int, type: str, title: str, detail: str, body: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {title}: {detail}" if detail and detail != title else f"{status} {title}")
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.body = body or {}

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The per-field errors of a validation problem (``errors``), else empty."""
        return list(self.body.get("errors") or [])


class Invalid(ApiError):
    """400 or 422: the request itself is wrong; retrying it will not help."""


class Unauthorized(ApiError):
    """401: no API key, or an unknown one."""


class Forbidden(ApiError):
    """403: the key's scope or projects do not allow this."""


class NotFound(ApiError):
    """404."""


class Conflict(ApiError):
    """409: an illegal transition, an idempotency key reused with another body, a decided review."""


class PayloadTooLarge(ApiError):
    """413."""


class RateLimited(ApiError):
    """429 (after the retries)."""


class ServerError(ApiError):
    """5xx (after the retries)."""


class Unavailable(ServerError):
    """503: the service or its database is not ready (after the retries)."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: Invalid,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: Invalid,
    429: RateLimited,
    503: Unavailable,
}


def error_for(response: httpx.Response) -> ApiError:
    """The exception for an error answer (the body must have been read)."""
    status = response.status_code
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        text = response.text[:500].strip()
        return cls(status, "about:blank", response.reason_phrase or str(status), text)
    return cls(
        status,
        str(body.get("type", "about:blank")),
        str(body.get("title", response.reason_phrase)),
        str(body.get("detail", "")),
        body,
    )
