"""The asyncio client: ``AsyncClient(url, api_key=...)``, the same methods as
``sync.Client``, awaited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import httpx
import orjson
from httpx_sse import aconnect_sse

from orchestration_service.client import calls as c
from orchestration_service.client import models as m
from orchestration_service.client.errors import TransportFailed, error_for
from orchestration_service.client.sync import DEFAULT_TIMEOUT, client_headers, is_final_event

T = TypeVar("T")


class AsyncClient:
    """See ``sync.Client``: the same arguments, methods and errors."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: c.RetryPolicy = c.RetryPolicy(),
        user_agent: str = "orchestration-service-client",
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.retry = retry
        self.http = http or httpx.AsyncClient(
            base_url=self.url + "/api/v1", headers=client_headers(api_key, user_agent), timeout=timeout
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def call(self, call: c.Call[T]) -> T:
        for attempt in range(1, self.retry.attempts + 1):
            last = attempt == self.retry.attempts
            try:
                r = await self.http.request(call.method, call.path, **call.request_kwargs())
            except httpx.TransportError as exc:
                if last or not self.retry.retry_error(call, exc):
                    raise TransportFailed(f"{call.method} {call.path}: {type(exc).__name__}: {exc}") from exc
                await asyncio.sleep(self.retry.delay(attempt))
                continue
            if r.status_code < 400:
                return call.read(c.decode(r))
            if last or not self.retry.retry_status(call, r.status_code):
                raise error_for(r)
            await asyncio.sleep(self.retry.delay(attempt, r.headers.get("retry-after")))
        raise AssertionError("unreachable")  # pragma: no cover

    # --- tasks ---------------------------------------------------------------------------

    async def submit(
        self,
        description: str,
        project_id: str,
        *,
        priority: str | None = None,
        options: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> m.TaskAccepted:
        return await self.call(c.submit(description, project_id, priority=priority, options=options,
                                        idempotency_key=idempotency_key))  # fmt: skip

    async def get_task(self, task_id: str) -> m.Task:
        return await self.call(c.get_task(task_id))

    async def list_tasks(self, **filters: Any) -> m.TaskPage:
        return await self.call(c.list_tasks(**filters))

    async def iter_tasks(self, **filters: Any) -> AsyncIterator[m.Task]:
        page = await self.list_tasks(**filters)
        while True:
            for task in page.items:
                yield task
            if not page.next_cursor or not page.items:
                return
            page = await self.list_tasks(**{**filters, "cursor": page.next_cursor, "offset": None})

    async def cancel_task(self, task_id: str, reason: str | None = None) -> m.Task:
        return await self.call(c.cancel_task(task_id, reason))

    async def retry_task(self, task_id: str) -> m.Task:
        return await self.call(c.retry_task(task_id))

    async def task_history(self, task_id: str) -> m.TaskHistory:
        return await self.call(c.task_history(task_id))

    async def task_tree(self, task_id: str) -> m.TaskTree:
        return await self.call(c.task_tree(task_id))

    def follow_task(
        self, task_id: str, *, last_event_id: str | None = None, timeout: float | None = None
    ) -> AsyncIterator[m.FeedEvent]:
        deadline = None if timeout is None else time.monotonic() + timeout
        return self._stream(f"/tasks/{task_id}/stream", {}, last_event_id, deadline, final_of=task_id)

    async def wait(self, task_id: str, *, timeout: float | None = None) -> m.Task:
        deadline = None if timeout is None else time.monotonic() + timeout
        async for _ in self._stream(f"/tasks/{task_id}/stream", {}, None, deadline, final_of=task_id):
            pass
        return await self.get_task(task_id)

    # --- reviews -------------------------------------------------------------------------

    async def list_reviews(self, **filters: Any) -> m.ReviewPage:
        return await self.call(c.list_reviews(**filters))

    async def get_review(self, review_id: str) -> m.Review:
        return await self.call(c.get_review(review_id))

    async def approve(self, review_id: str, comment: str | None = None) -> m.Review:
        return await self.call(c.decide_review(review_id, "approve", {"comment": comment} if comment else {}))

    async def reject(self, review_id: str, reason: str) -> m.Review:
        return await self.call(c.decide_review(review_id, "reject", {"reason": reason}))

    async def request_changes(self, review_id: str, feedback: str) -> m.Review:
        return await self.call(c.decide_review(review_id, "request-changes", {"feedback": feedback}))

    # --- provenance ----------------------------------------------------------------------

    async def get_provenance(self, record_id: str) -> m.ProvenanceRecord:
        return await self.call(c.get_provenance(record_id))

    async def lineage(self, record_id: str, **kw: Any) -> m.Lineage:
        return await self.call(c.lineage(record_id, **kw))

    async def impact(self, record_id: str, **kw: Any) -> m.Impact:
        return await self.call(c.impact(record_id, **kw))

    # --- events, fleet, health -----------------------------------------------------------

    async def post_event(self, envelope: dict[str, Any]) -> m.EventResult:
        return await self.call(c.post_event(envelope))

    async def events(
        self,
        types: str | list[str] | None = None,
        *,
        project_id: str | None = None,
        subject: str | None = None,
        after: int | None = None,
        last_event_id: str | None = None,
        on_position: Callable[[str], None] | None = None,
    ) -> AsyncIterator[m.FeedEvent]:
        params = c.feed_params(types, project_id, subject, None if last_event_id else after)
        async for event in self._stream("/events", params, last_event_id, None):
            yield event
            if on_position is not None and event.id:
                on_position(event.id)

    async def workers(self, **kw: Any) -> m.WorkerList:
        return await self.call(c.workers(**kw))

    async def failures(self, **filters: Any) -> m.FailurePage:
        return await self.call(c.failures(**filters))

    async def dead_letters(self, **filters: Any) -> m.DeadLetterPage:
        return await self.call(c.dead_letters(**filters))

    async def queues(self) -> m.QueueList:
        return await self.call(c.queues())

    async def health(self, which: str = "") -> m.Health:
        return await self.call(c.health(which))

    # --- streams -------------------------------------------------------------------------

    async def _stream(
        self,
        path: str,
        params: dict[str, Any],
        last_id: str | None,
        deadline: float | None,
        *,
        final_of: str | None = None,
    ) -> AsyncIterator[m.FeedEvent]:
        failures = 0
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"{path}: still going after the timeout")
            headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last_id} if last_id else {})}
            if last_id:
                params = {k: v for k, v in params.items() if k != "after"}  # after would win
            try:
                async with aconnect_sse(
                    self.http, "GET", path, params=params, headers=headers,
                    timeout=httpx.Timeout(30.0, read=remaining),
                ) as source:  # fmt: skip
                    if source.response.status_code >= 400:
                        await source.response.aread()
                        raise error_for(source.response)
                    failures = 0
                    async for sse in source.aiter_sse():
                        # Checked on keep-alives too: they keep the read timeout from firing.
                        if deadline is not None and time.monotonic() > deadline:
                            raise TimeoutError(f"{path}: still going after the timeout")
                        if not sse.data:
                            continue
                        last_id = sse.id or last_id
                        event = m.FeedEvent(id=sse.id or None, event=sse.event, data=orjson.loads(sse.data))
                        yield event
                        if final_of is not None and is_final_event(event, final_of):
                            return
                        if deadline is not None and time.monotonic() > deadline:
                            raise TimeoutError(f"{path}: still going after the timeout")
            except httpx.TransportError as exc:
                failures += 1
                if failures >= self.retry.attempts:
                    raise TransportFailed(f"GET {path}: {type(exc).__name__}") from exc
                await asyncio.sleep(self.retry.delay(failures))
