"""Calling a sibling service over HTTP: one pooled client, a deadline per call, bounded
retries with jittered backoff, a circuit breaker, and answers validated by pydantic.

A call either returns a validated answer or raises :class:`CallFailed` whose ``reason`` is
one short sentence for a task's history ("timeout after 60s", "HTTP 503 (after 3
attempts)", "malformed answer: domain: Input should be …", "circuit open …").
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import httpx
from opentelemetry.trace import Span, SpanKind
from pydantic import BaseModel, ValidationError

from orchestration_service import tracing
from orchestration_service.config import RoutingSettings
from orchestration_service.redaction import error_text, reason, redact_url

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
BreakerState = Literal["closed", "open", "half-open"]

RECENT_SECONDS = 60.0  # a success this recent needs no health probe


def make_http_client(routing: RoutingSettings) -> httpx.AsyncClient | None:
    """The pooled client every Agent and RAG call shares (built by the Container, closed at
    stop); None when neither service is configured.

    ``trust_env=False``: no proxy or netrc from the environment, calls go where configured."""
    if not (routing.agent_service_url or routing.rag_service_url):
        return None
    # Each analysis holds at most one agent and one RAG connection at a time.
    size = 2 * routing.max_concurrent_analyses + 4
    return httpx.AsyncClient(
        trust_env=False,
        follow_redirects=False,
        limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
        headers={"user-agent": "dats-orchestration-service"},
    )


class CallFailed(Exception):
    """``reason`` goes to the task's history; ``kind`` is its short classified form
    ("timeout", "connection refused", "http 503" …), the only one health answers show."""

    def __init__(self, reason: str, kind: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind or reason


class _Retryable(CallFailed):
    pass


class CircuitBreaker:
    """Closed: calls pass, consecutive failures are counted. ``threshold`` failures in a row
    open it: calls fail at once for ``reset_seconds``. Then it is half-open: one trial call
    passes (the others still fail fast); its success closes the breaker, its failure opens
    it again for another ``reset_seconds``."""

    def __init__(
        self, threshold: int, reset_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.reset_seconds = reset_seconds
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self._trial = False
        self.times_opened = 0

    @property
    def state(self) -> BreakerState:
        if self.opened_at is None:
            return "closed"
        if self._trial or self.clock() - self.opened_at >= self.reset_seconds:
            return "half-open"
        return "open"

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self._trial:
            self._trial = True
            return True
        return False

    def retry_in(self) -> float:
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.reset_seconds - (self.clock() - self.opened_at))

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self._trial = False

    def failure(self) -> None:
        self.failures += 1
        if self._trial or (self.opened_at is None and self.failures >= self.threshold):
            # A failed trial opens it again; so does the threshold-th failure in a row.
            self.opened_at = self.clock()
            self.times_opened += 1
        self._trial = False

    def release(self) -> None:
        """A call that ended without an outcome (cancelled): let another trial through."""
        self._trial = False


class ServiceClient:
    """One sibling service (base URL ``…/api/v1``)."""

    def __init__(
        self,
        name: str,
        base_url: str,
        http: httpx.AsyncClient,
        *,
        timeout: float,
        retries: int,
        breaker: CircuitBreaker,
        probe_ttl: float = 5.0,
        backoff_base: float = 0.1,
        backoff_max: float = 2.0,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.http = http
        self.timeout = timeout
        self.retries = retries
        self.breaker = breaker
        self.probe_ttl = probe_ttl
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.calls = 0
        self.failures = 0
        self.last_ok_at: float | None = None
        self.last_failure_at: float | None = None
        self.last_error: str | None = None
        self._probe: tuple[float, bool, str | None] | None = None

    async def post(self, path: str, body: dict[str, Any], answer: type[M]) -> M:
        """POST ``body`` as JSON and validate the answer; raise CallFailed otherwise.

        The whole call, retries and backoff included, ends within ``timeout``."""
        if not self.breaker.allow():
            reason = (
                f"circuit open after {self.breaker.failures} consecutive failures "
                f"(next trial in {self.breaker.retry_in():.0f}s; last: {self.last_error})"
            )
            raise CallFailed(reason, "circuit open")
        self.calls += 1
        try:
            async with asyncio.timeout(self.timeout):
                result = await self._post_with_retries(path, body, answer)
        except TimeoutError:
            self._failed("timeout")
            raise CallFailed(f"timeout after {self.timeout:g}s", "timeout") from None
        except CallFailed as exc:
            self._failed(exc.kind)
            raise
        except BaseException:
            self.breaker.release()
            raise
        self.breaker.success()
        self.last_ok_at = time.monotonic()
        return result

    def _failed(self, kind: str) -> None:
        self.failures += 1
        self.last_failure_at = time.monotonic()
        self.last_error = kind
        self.breaker.failure()
        if self.breaker.state == "open":
            log.warning("%s: %s; circuit open for %.0fs", self.name, kind, self.breaker.retry_in())

    async def _post_with_retries(self, path: str, body: dict[str, Any], answer: type[M]) -> M:
        url = self.base_url + path
        last = _Retryable("")
        for attempt in range(self.retries + 1):
            try:
                return await self._post_once(url, body, answer)
            except _Retryable as exc:
                last = exc
            if attempt < self.retries:
                # Full jitter: replicas that failed together do not retry together.
                await asyncio.sleep(random.uniform(0, min(self.backoff_max, self.backoff_base * 2**attempt)))
        attempts = self.retries + 1
        raise CallFailed(f"{last.reason} (after {attempts} attempt{'s' if attempts > 1 else ''})", last.kind)

    async def _post_once(self, url: str, body: dict[str, Any], answer: type[M]) -> M:
        # One CLIENT span per attempt; its traceparent header lets the sibling service
        # continue the task's trace.
        path = url[len(self.base_url) :] or "/"
        attributes = {"peer.service": self.name, "http.request.method": "POST", "url.full": redact_url(url)}
        with tracing.span(f"POST {path}", kind=SpanKind.CLIENT, attributes=attributes) as span:
            result = await self._send(span, url, body, answer)
        return result

    async def _send(self, span: Span, url: str, body: dict[str, Any], answer: type[M]) -> M:
        try:
            r = await self.http.post(url, json=body, timeout=self.timeout, headers=tracing.outgoing_headers())
        except httpx.TimeoutException:
            raise CallFailed(f"timeout after {self.timeout:g}s", "timeout") from None
        except httpx.TransportError as exc:
            raise _Retryable(f"connection failed: {error_text(exc)}", reason(exc)) from None
        if span.is_recording():
            span.set_attribute("http.response.status_code", r.status_code)
        if r.status_code >= 500:
            raise _Retryable(f"HTTP {r.status_code}", f"http {r.status_code}")
        if not r.is_success:
            raise CallFailed(f"HTTP {r.status_code}: {r.text[:200]}", f"http {r.status_code}")
        try:
            return answer.model_validate_json(r.content)
        except ValidationError as exc:
            raise CallFailed(f"malformed answer: {describe(exc)}", "malformed answer") from None

    # -- health ------------------------------------------------------------------------
    def state(self) -> str:
        """Without probing: ``degraded`` when the breaker is not closed or the last call
        failed, else ``connected`` (configured, nothing failed since the last success)."""
        if self.breaker.state != "closed":
            return "degraded"
        if self.last_failure_at is not None and (self.last_ok_at or 0) < self.last_failure_at:
            return "degraded"
        return "connected"

    async def health(self) -> tuple[str, dict[str, Any]]:
        """``connected`` when the last call succeeded (recently) or, with no recent call, a
        ``GET {base}/health`` probe answers 2xx; ``degraded`` when the breaker is not closed,
        the last call failed, or the probe fails."""
        info: dict[str, Any] = {
            "url": redact_url(self.base_url),
            "breaker": self.breaker.state,
            "calls": self.calls,
            "failures": self.failures,
        }
        if self.last_error:
            info["last_error"] = self.last_error
        if self.breaker.state != "closed":
            info["retry_in_seconds"] = round(self.breaker.retry_in(), 1)
        if self.state() == "degraded":
            return "degraded", info
        if self.last_ok_at is not None and time.monotonic() - self.last_ok_at < RECENT_SECONDS:
            return "connected", info
        ok, error = await self.probe()
        info["probe"] = "ok" if ok else error
        return ("connected" if ok else "degraded"), info

    async def probe(self) -> tuple[bool, str | None]:
        now = time.monotonic()
        if self._probe is not None and now - self._probe[0] < self.probe_ttl:
            return self._probe[1], self._probe[2]
        try:
            r = await self.http.get(self.base_url + "/health", timeout=min(2.0, self.timeout))
            ok, error = 200 <= r.status_code < 300, (None if r.is_success else f"http {r.status_code}")
        except httpx.HTTPError as exc:
            ok, error = False, reason(exc)
        self._probe = (time.monotonic(), ok, error)
        return ok, error


def describe(exc: ValidationError) -> str:
    """The first problem of a validation error, in one line."""
    err = exc.errors(include_url=False)[0]
    if err["type"] == "json_invalid":
        return "not JSON"
    loc = ".".join(str(p) for p in err["loc"]) or "body"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{loc}: {err['msg']}{more}"
