"""The HTTP side of the CLI: a small client that turns every expected failure into one
clear line and an exit code, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NoReturn

import httpx
import typer

from orchestration_service.client import ApiError, Call, Client, ClientError, RetryPolicy, TransportFailed
from orchestration_service.client.calls import raw
from orchestration_service.client.models import FeedEvent

DEFAULT_URL = "http://127.0.0.1:8000"

# Exit codes (documented in docs/using/cli.md; tests/unit/test_docs_reference.py checks).
EXIT_OK = 0
EXIT_ERROR = 1  # API error, unreachable service, task failed
EXIT_USAGE = 2
EXIT_CANCELLED = 3
EXIT_TIMEOUT = 4


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    raise CliError(message, code)


class Api:
    """The CLI's calls, made by the client library (``orchestration_service.client``): its
    retries, timeouts and problem+json parsing; failures become one line and an exit code."""

    def __init__(self, url: str, api_key: str | None, timeout: float = 30.0) -> None:
        self.base = url.rstrip("/")
        self.client = Client(
            self.base, api_key=api_key, timeout=timeout, user_agent="orchestration-service-cli",
            retry=RetryPolicy(attempts=3),
        )  # fmt: skip

    def close(self) -> None:
        self.client.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | list[tuple[str, Any]] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        headers = headers or {}
        # Reads, and submissions carrying their idempotency key, are safe to send again.
        safe = method == "GET" or "Idempotency-Key" in headers
        call = Call(method, path, raw, params=as_dict(params), body=json, headers=headers, idempotent=safe)
        return self.run_call(call)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        return self.request("POST", path, json=body, headers=headers)

    def run_call(self, call: Call[Any]) -> Any:
        """A call of the client library, its failures as one line and exit code 1."""
        try:
            return self.client.call(call)
        except ApiError as exc:
            fail(problem_text(exc))
        except TransportFailed as exc:
            fail(self._transport_text(exc))
        except ClientError as exc:
            fail(f"the service at {self.base} answered with something unexpected ({exc})")

    def stream(self, events: Iterator[FeedEvent]) -> Iterator[FeedEvent]:
        """A stream of the client library (``follow_task``, ``events``: they resume after a
        dropped connection themselves), its failures as one line and an exit code."""
        try:
            yield from events
        except ApiError as exc:
            fail(problem_text(exc))
        except TransportFailed as exc:
            fail(f"lost the connection to the service at {self.base} ({self._cause(exc)})")

    def _transport_text(self, exc: TransportFailed) -> str:
        if isinstance(exc.__cause__, httpx.TimeoutException):
            return f"the service at {self.base} did not answer in time"
        return f"cannot reach the service at {self.base} ({self._cause(exc)})"

    @staticmethod
    def _cause(exc: TransportFailed) -> str:
        return type(exc.__cause__).__name__ if exc.__cause__ else "no answer"


def as_dict(params: dict[str, Any] | list[tuple[str, Any]] | None) -> dict[str, Any]:
    """Query parameters as a dict, a repeated name's values as a list."""
    if params is None or isinstance(params, dict):
        return dict(params or {})
    grouped: dict[str, list[Any]] = {}
    for name, value in params:
        grouped.setdefault(name, []).append(value)
    return grouped


def problem_text(exc: ApiError) -> str:
    if exc.type == "about:blank" and not exc.body:
        return f"error {exc.status}: {exc.detail[:200] or exc.title}"
    detail = exc.detail
    return f"{exc.title}: {detail}" if detail and detail != exc.title else exc.title


def run(fn: Any) -> Any:
    """Run a command body, turning CliError into a message and an exit code."""
    try:
        return fn()
    except CliError as exc:
        typer.echo(f"orchestration-service: {exc.message}", err=True)
        raise typer.Exit(exc.code) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
