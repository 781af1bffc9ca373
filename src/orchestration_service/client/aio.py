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
from orchestration_service.client import project_calls as pc
from orchestration_service.client import project_models as pm
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

    async def health_detailed(self) -> m.DetailedHealth:
        return await self.call(c.health_detailed())

    async def get_dead_letter(self, letter_id: str) -> m.DeadLetter:
        return await self.call(c.get_dead_letter(letter_id))

    async def replay_dead_letter(self, letter_id: str) -> m.ReplayResult:
        """Run the letter's event through the handlers again (not resent after a lost answer)."""
        return await self.call(c.replay_dead_letter(letter_id))

    async def discard_dead_letter(self, letter_id: str) -> m.DiscardResult:
        return await self.call(c.discard_dead_letter(letter_id))

    # --- projects ------------------------------------------------------------------------

    async def list_projects(self, *, include_archived: bool | None = None) -> pm.ProjectList:
        return await self.call(pc.list_projects(include_archived=include_archived))

    async def create_project(
        self,
        project_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        constitution: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> pm.Project:
        """``Conflict`` if it exists. ``settings``: see ``project_calls.create_project``."""
        return await self.call(pc.create_project(project_id, name=name, description=description,
                                                 constitution=constitution, settings=settings))  # fmt: skip

    async def get_project(self, project_id: str) -> pm.Project:
        return await self.call(pc.get_project(project_id))

    async def update_project(
        self,
        project_id: str,
        *,
        name: str | None = pc.UNSET,
        description: str | None = pc.UNSET,
        constitution: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> pm.Project:
        """Only what is given changes (``name=None`` clears it); a ``constitution`` becomes
        the project's next version."""
        return await self.call(pc.update_project(project_id, name=name, description=description,
                                                 constitution=constitution, settings=settings))  # fmt: skip

    async def archive_project(self, project_id: str) -> pm.Project:
        return await self.call(pc.archive_project(project_id))

    async def get_constitution(self, project_id: str, version: int | None = None) -> pm.Constitution:
        return await self.call(pc.get_constitution(project_id, version))

    async def project_status(self, project_id: str) -> pm.ProjectStatus:
        return await self.call(pc.project_status(project_id))

    async def consistency(self, project_id: str) -> pm.Consistency:
        return await self.call(pc.consistency(project_id))

    async def checkpoints(self, project_id: str, **kw: Any) -> pm.CheckpointPage:
        """``include_invalid``, ``limit``, ``offset``."""
        return await self.call(pc.checkpoints(project_id, **kw))

    async def create_checkpoint(self, project_id: str, **fields: Any) -> pm.Checkpoint:
        """Fields: git_ref, rag_state_ref, work_product_ref, description, trigger."""
        return await self.call(pc.create_checkpoint(project_id, **fields))

    # --- provenance: queries and writes --------------------------------------------------

    async def list_provenance(self, **filters: Any) -> m.ProvenancePage:
        """Filters: see ``calls.list_provenance``; paging: limit, offset or cursor."""
        return await self.call(c.list_provenance(**filters))

    async def taint_events(self, **filters: Any) -> m.TaintEventPage:
        return await self.call(c.taint_events(**filters))

    async def provenance_by_artifact(
        self, artifact_id: str, *, project_id: str | None = None
    ) -> m.ProvenanceRecord:
        return await self.call(c.provenance_by_artifact(artifact_id, project_id=project_id))

    async def root_cause(self, record_id: str, *, max_depth: int | None = None) -> m.RootCause:
        return await self.call(c.root_cause(record_id, max_depth=max_depth))

    async def taint(
        self, record_id: str, reason: str, *, tainted_by: str | None = None, cascade_id: str | None = None
    ) -> m.TaintResult:
        """Taint the record and mark everything downstream suspect. Every try carries the
        same ``cascade_id`` (yours or a fresh one), so a retry never cascades twice."""
        return await self.call(c.taint(record_id, reason, tainted_by=tainted_by, cascade_id=cascade_id))

    async def clear_suspect(
        self, record_id: str, *, reason: str | None = None, cleared_by: str | None = None
    ) -> m.ClearSuspectResult:
        return await self.call(c.clear_suspect(record_id, reason=reason, cleared_by=cleared_by))

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
