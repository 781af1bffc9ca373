"""The blocking client: ``Client(url, api_key=...)``, one method per route."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import orjson
from httpx_sse import EventSource, connect_sse

from orchestration_service.client import calls as c
from orchestration_service.client import models as m
from orchestration_service.client import project_calls as pc
from orchestration_service.client import project_models as pm
from orchestration_service.client.errors import ApiError, TransportFailed, error_for

T = TypeVar("T")
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


def client_headers(api_key: str | None, user_agent: str) -> dict[str, str]:
    headers = {"User-Agent": user_agent, "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


class Client:
    """``url`` is the service's root (``http://host:8000``). ``timeout``: seconds or an
    ``httpx.Timeout`` for each try; ``retry``: the ``RetryPolicy`` (``calls.NO_RETRY`` for none).
    Errors raise ``errors.ApiError`` subclasses or ``errors.TransportFailed``."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retry: c.RetryPolicy = c.RetryPolicy(),
        user_agent: str = "orchestration-service-client",
        http: httpx.Client | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.retry = retry
        self.http = http or httpx.Client(
            base_url=self.url + "/api/v1", headers=client_headers(api_key, user_agent), timeout=timeout
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, call: c.Call[T]) -> T:
        """Run one call with the retry policy; its decoded answer."""
        for attempt in range(1, self.retry.attempts + 1):
            last = attempt == self.retry.attempts
            try:
                r = self.http.request(call.method, call.path, **call.request_kwargs())
            except httpx.TransportError as exc:
                if last or not self.retry.retry_error(call, exc):
                    raise TransportFailed(f"{call.method} {call.path}: {type(exc).__name__}: {exc}") from exc
                time.sleep(self.retry.delay(attempt))
                continue
            if r.status_code < 400:
                return call.read(c.decode(r))
            if last or not self.retry.retry_status(call, r.status_code):
                raise error_for(r)
            time.sleep(self.retry.delay(attempt, r.headers.get("retry-after")))
        raise AssertionError("unreachable")  # pragma: no cover

    # --- tasks ---------------------------------------------------------------------------

    def submit(
        self,
        description: str,
        project_id: str,
        *,
        priority: str | None = None,
        options: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> m.TaskAccepted:
        return self.call(c.submit(description, project_id, priority=priority, options=options,
                                  idempotency_key=idempotency_key))  # fmt: skip

    def get_task(self, task_id: str) -> m.Task:
        return self.call(c.get_task(task_id))

    def list_tasks(self, **filters: Any) -> m.TaskPage:
        """Filters: project_id, status, priority (a value or a list), created_after,
        created_before; paging: limit, offset or cursor (``next_cursor`` of the last page)."""
        return self.call(c.list_tasks(**filters))

    def iter_tasks(self, **filters: Any) -> Iterator[m.Task]:
        """Every task matching the filters, page after page (by cursor)."""
        page = self.list_tasks(**filters)
        while True:
            yield from page.items
            if not page.next_cursor or not page.items:
                return
            page = self.list_tasks(**{**filters, "cursor": page.next_cursor, "offset": None})

    def cancel_task(self, task_id: str, reason: str | None = None) -> m.Task:
        return self.call(c.cancel_task(task_id, reason))

    def retry_task(self, task_id: str) -> m.Task:
        return self.call(c.retry_task(task_id))

    def task_history(self, task_id: str) -> m.TaskHistory:
        return self.call(c.task_history(task_id))

    def task_tree(self, task_id: str) -> m.TaskTree:
        return self.call(c.task_tree(task_id))

    def follow_task(
        self, task_id: str, *, last_event_id: str | None = None, timeout: float | None = None
    ) -> Iterator[m.FeedEvent]:
        """The task's stream (``snapshot``, ``status``, ``progress`` events), resumed from the
        last id after a dropped connection; ends when the task is final. ``TimeoutError``
        after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        yield from self._stream(f"/tasks/{task_id}/stream", {}, last_event_id, deadline, final_of=task_id)

    def wait(self, task_id: str, *, timeout: float | None = None) -> m.Task:
        """Follow the task until it is final; its final document. ``TimeoutError`` after
        ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for _ in self._stream(f"/tasks/{task_id}/stream", {}, None, deadline, final_of=task_id):
            pass
        return self.get_task(task_id)

    # --- reviews -------------------------------------------------------------------------

    def list_reviews(self, **filters: Any) -> m.ReviewPage:
        return self.call(c.list_reviews(**filters))

    def get_review(self, review_id: str) -> m.Review:
        return self.call(c.get_review(review_id))

    def approve(self, review_id: str, comment: str | None = None) -> m.Review:
        return self.call(c.decide_review(review_id, "approve", {"comment": comment} if comment else {}))

    def reject(self, review_id: str, reason: str) -> m.Review:
        return self.call(c.decide_review(review_id, "reject", {"reason": reason}))

    def request_changes(self, review_id: str, feedback: str) -> m.Review:
        return self.call(c.decide_review(review_id, "request-changes", {"feedback": feedback}))

    # --- provenance ----------------------------------------------------------------------

    def get_provenance(self, record_id: str) -> m.ProvenanceRecord:
        return self.call(c.get_provenance(record_id))

    def lineage(self, record_id: str, **kw: Any) -> m.Lineage:
        return self.call(c.lineage(record_id, **kw))

    def impact(self, record_id: str, **kw: Any) -> m.Impact:
        return self.call(c.impact(record_id, **kw))

    # --- events, fleet, health -----------------------------------------------------------

    def post_event(self, envelope: dict[str, Any]) -> m.EventResult:
        return self.call(c.post_event(envelope))

    def events(
        self,
        types: str | list[str] | None = None,
        *,
        project_id: str | None = None,
        subject: str | None = None,
        after: int | None = None,
        last_event_id: str | None = None,
        on_position: Callable[[str], None] | None = None,
    ) -> Iterator[m.FeedEvent]:
        """The event feed (each item's ``data`` is the CloudEvent), forever, reconnecting
        after a drop from the last id seen. Resume a previous run with ``last_event_id``;
        ``after=0`` starts at the oldest retained event; neither: only new events."""
        params = c.feed_params(types, project_id, subject, None if last_event_id else after)
        for event in self._stream("/events", params, last_event_id, None):
            yield event
            if on_position is not None and event.id:
                on_position(event.id)

    def workers(self, **kw: Any) -> m.WorkerList:
        return self.call(c.workers(**kw))

    def failures(self, **filters: Any) -> m.FailurePage:
        return self.call(c.failures(**filters))

    def dead_letters(self, **filters: Any) -> m.DeadLetterPage:
        return self.call(c.dead_letters(**filters))

    def queues(self) -> m.QueueList:
        return self.call(c.queues())

    def health(self, which: str = "") -> m.Health:
        return self.call(c.health(which))

    def health_detailed(self) -> m.DetailedHealth:
        return self.call(c.health_detailed())

    def get_dead_letter(self, letter_id: str) -> m.DeadLetter:
        return self.call(c.get_dead_letter(letter_id))

    def replay_dead_letter(self, letter_id: str) -> m.ReplayResult:
        """Run the letter's event through the handlers again (not resent after a lost answer)."""
        return self.call(c.replay_dead_letter(letter_id))

    def discard_dead_letter(self, letter_id: str) -> m.DiscardResult:
        return self.call(c.discard_dead_letter(letter_id))

    # --- projects ------------------------------------------------------------------------

    def list_projects(self, *, include_archived: bool | None = None) -> pm.ProjectList:
        return self.call(pc.list_projects(include_archived=include_archived))

    def create_project(
        self,
        project_id: str,
        *,
        name: str | None = None,
        description: str | None = None,
        constitution: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> pm.Project:
        """``Conflict`` if it exists. ``settings``: see ``project_calls.create_project``."""
        return self.call(pc.create_project(project_id, name=name, description=description,
                                           constitution=constitution, settings=settings))  # fmt: skip

    def get_project(self, project_id: str) -> pm.Project:
        return self.call(pc.get_project(project_id))

    def update_project(
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
        return self.call(pc.update_project(project_id, name=name, description=description,
                                           constitution=constitution, settings=settings))  # fmt: skip

    def archive_project(self, project_id: str) -> pm.Project:
        return self.call(pc.archive_project(project_id))

    def get_constitution(self, project_id: str, version: int | None = None) -> pm.Constitution:
        return self.call(pc.get_constitution(project_id, version))

    def project_status(self, project_id: str) -> pm.ProjectStatus:
        return self.call(pc.project_status(project_id))

    def consistency(self, project_id: str) -> pm.Consistency:
        return self.call(pc.consistency(project_id))

    def checkpoints(self, project_id: str, **kw: Any) -> pm.CheckpointPage:
        """``include_invalid``, ``limit``, ``offset``."""
        return self.call(pc.checkpoints(project_id, **kw))

    def create_checkpoint(self, project_id: str, **fields: Any) -> pm.Checkpoint:
        """Fields: git_ref, rag_state_ref, work_product_ref, description, trigger."""
        return self.call(pc.create_checkpoint(project_id, **fields))

    # --- provenance: queries and writes --------------------------------------------------

    def list_provenance(self, **filters: Any) -> m.ProvenancePage:
        """Filters: see ``calls.list_provenance``; paging: limit, offset or cursor."""
        return self.call(c.list_provenance(**filters))

    def taint_events(self, **filters: Any) -> m.TaintEventPage:
        return self.call(c.taint_events(**filters))

    def provenance_by_artifact(
        self, artifact_id: str, *, project_id: str | None = None
    ) -> m.ProvenanceRecord:
        return self.call(c.provenance_by_artifact(artifact_id, project_id=project_id))

    def root_cause(self, record_id: str, *, max_depth: int | None = None) -> m.RootCause:
        return self.call(c.root_cause(record_id, max_depth=max_depth))

    def taint(
        self, record_id: str, reason: str, *, tainted_by: str | None = None, cascade_id: str | None = None
    ) -> m.TaintResult:
        """Taint the record and mark everything downstream suspect. Every try carries the
        same ``cascade_id`` (yours or a fresh one), so a retry never cascades twice."""
        return self.call(c.taint(record_id, reason, tainted_by=tainted_by, cascade_id=cascade_id))

    def clear_suspect(
        self, record_id: str, *, reason: str | None = None, cleared_by: str | None = None
    ) -> m.ClearSuspectResult:
        return self.call(c.clear_suspect(record_id, reason=reason, cleared_by=cleared_by))

    # --- streams -------------------------------------------------------------------------

    def _stream(
        self,
        path: str,
        params: dict[str, Any],
        last_id: str | None,
        deadline: float | None,
        *,
        final_of: str | None = None,
    ) -> Iterator[m.FeedEvent]:
        failures = 0
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"{path}: still going after the timeout")
            try:
                if last_id:
                    params = {k: v for k, v in params.items() if k != "after"}  # after would win
                with self._connect(path, params, last_id, remaining) as source:
                    failures = 0
                    for sse in source.iter_sse():
                        # Checked on keep-alives too: they keep the read timeout from firing.
                        if deadline is not None and time.monotonic() > deadline:
                            raise TimeoutError(f"{path}: still going after the timeout")
                        if not sse.data:
                            continue  # a keep-alive comment
                        last_id = sse.id or last_id
                        event = m.FeedEvent(id=sse.id or None, event=sse.event, data=orjson.loads(sse.data))
                        yield event
                        if final_of is not None and is_final_event(event, final_of):
                            return
                        if deadline is not None and time.monotonic() > deadline:
                            raise TimeoutError(f"{path}: still going after the timeout")
            except (httpx.TransportError, TransportFailed) as exc:
                failures += 1
                if failures >= self.retry.attempts:
                    raise TransportFailed(f"GET {path}: {type(exc).__name__}") from exc
                time.sleep(self.retry.delay(failures))

    def _connect(
        self, path: str, params: dict[str, Any], last_id: str | None, read_timeout: float | None
    ) -> Any:
        return _SyncSource(self.http, path, params, last_id, read_timeout)


def is_final_event(event: m.FeedEvent, task_id: str) -> bool:
    """Whether a task-stream event shows ``task_id`` in a final state."""
    if event.event not in ("snapshot", "status") or not isinstance(event.data, dict):
        return False
    task = event.data.get("task") if event.event == "status" else event.data
    return (
        isinstance(task, dict) and task.get("task_id") == task_id and task.get("status") in m.FINAL_STATUSES
    )


class _SyncSource:
    """``connect_sse`` that raises the problem of an error answer instead of streaming it."""

    def __init__(
        self, http: httpx.Client, path: str, params: dict[str, Any], last_id: str | None, read: float | None
    ) -> None:
        headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last_id} if last_id else {})}
        self._cm = connect_sse(
            http, "GET", path, params=params, headers=headers, timeout=httpx.Timeout(30.0, read=read)
        )

    def __enter__(self) -> EventSource:
        source = self._cm.__enter__()
        if source.response.status_code >= 400:
            source.response.read()
            error: ApiError = error_for(source.response)
            self._cm.__exit__(None, None, None)
            raise error
        return source

    def __exit__(self, *exc: Any) -> None:
        self._cm.__exit__(*exc)
