"""The worker helper: take ``task.ready.{tier}`` announcements, hand each task to a
function, send ``task.progress`` heartbeats while it runs, and post ``task.output.created``
(or ``task.failed``) with stable ids.

    async def write(job: Job) -> Output:
        job.report(0.5, "writing")
        return Output(artifacts=[{"id": f"art-{job.task_id}", "type": "code"}])

    async with AsyncClient(url) as client:
        await Worker(HttpFeed(client, FilePosition("var/.last-event-id")), write,
                     source="/my-worker").run()

Two transports, one ``Worker``: ``HttpFeed`` (the service's event feed and ingress; resumes
from the last event id it handled, kept by a ``Position``) and ``RabbitMQ`` (a durable queue
bound to ``task.ready.{tier}``; a message is acked once its outcome is posted, so a stopped
worker's tasks wait in the queue). The handler may be ``async`` or plain (run in a thread, so
the heartbeats go on while it blocks).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from orchestration_service.client import cloudevents as ce
from orchestration_service.client.aio import AsyncClient
from orchestration_service.client.errors import Invalid, NotFound

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One task to do: the ``task.ready`` payload, and a way to report progress."""

    task_id: str
    attempt: int
    data: dict[str, Any]
    progress: float | None = None
    message: str | None = None
    version: int = 0  # of the report; the heartbeats know which one they sent
    on_report: Callable[[], object] | None = field(default=None, repr=False)

    @property
    def description(self) -> str:
        return str(self.data.get("description", ""))

    def report(self, progress: float | None = None, message: str | None = None) -> None:
        """Sent as a heartbeat right away (safe to call from the handler's thread)."""
        self.progress, self.message = progress, message
        self.version += 1
        if self.on_report is not None:
            self.on_report()


@dataclass
class Output:
    """What the task produced (the ``task.output.created`` payload, less task and attempt)."""

    artifacts: list[dict[str, Any]]
    output: dict[str, Any] | str | None = None
    model_used: str | None = None
    tokens_input: int | None = None
    tokens_output: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class TaskFailed(Exception):
    """Raise from the handler to post ``task.failed`` (any other exception does too, as
    retryable)."""

    def __init__(self, error: str, *, retryable: bool = True) -> None:
        super().__init__(error)
        self.error = error
        self.retryable = retryable


Handler = Callable[[Job], Output] | Callable[[Job], Awaitable[Output]]


class Announcement(Protocol):
    envelope: dict[str, Any]

    async def done(self) -> None:
        """The outcome is posted: don't deliver this announcement again."""


class Transport(Protocol):
    def announcements(self, tiers: tuple[str, ...]) -> AsyncIterator[Announcement]: ...

    async def post(self, envelope: dict[str, Any]) -> None: ...

    async def still_current(self, task_id: str, attempt: int) -> bool:
        """Whether the attempt is still running (a replayed announcement may be over)."""
        ...


# --- resuming the HTTP feed --------------------------------------------------------------


class Position(Protocol):
    def load(self) -> str | None: ...

    def save(self, event_id: str) -> None: ...


class FilePosition:
    """The last handled event id in a small file, replaced atomically."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def load(self) -> str | None:
        try:
            return self.path.read_text().strip() or None
        except FileNotFoundError:
            return None

    def save(self, event_id: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(event_id)
        tmp.replace(self.path)


class MemoryPosition:
    def __init__(self, event_id: str | None = None) -> None:
        self.event_id = event_id

    def load(self) -> str | None:
        return self.event_id

    def save(self, event_id: str) -> None:
        self.event_id = event_id


@dataclass
class _FeedItem:
    envelope: dict[str, Any]
    event_id: str | None
    position: Position

    async def done(self) -> None:
        if self.event_id:
            self.position.save(self.event_id)


class HttpFeed:
    """The service's SSE event feed in, its CloudEvents ingress out. Without a saved
    position it starts with the announcements already waiting (``after=0``)."""

    def __init__(self, client: AsyncClient, position: Position | None = None) -> None:
        self.client = client
        self.position = position or MemoryPosition()

    async def announcements(self, tiers: tuple[str, ...]) -> AsyncIterator[Announcement]:
        types = [f"task.ready.{t}" for t in tiers]
        last = self.position.load()
        async for event in self.client.events(types, last_event_id=last, after=None if last else 0):
            yield _FeedItem(event.data, event.id, self.position)

    async def post(self, envelope: dict[str, Any]) -> None:
        await self.client.post_event(envelope)

    async def still_current(self, task_id: str, attempt: int) -> bool:
        try:
            task = await self.client.get_task(task_id)
        except NotFound:
            return False
        return task.status == "running" and task.attempt == attempt


# --- the worker --------------------------------------------------------------------------


class Worker:
    """Runs ``handler`` for each announced task, one at a time (run several workers for
    more). ``source``: the CloudEvent source of what it posts (also the stable ids' seed)."""

    def __init__(
        self,
        transport: Transport,
        handler: Handler,
        *,
        source: str,
        tiers: tuple[str, ...] = ("*",),
        worker_id: str | None = None,
        heartbeat_seconds: float = 10.0,
        on_output: Callable[[Job], Awaitable[None]] | None = None,
    ) -> None:
        self.transport = transport
        self.handler = as_handler(handler)
        self.source = source
        self.tiers = tiers
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.heartbeat_seconds = heartbeat_seconds
        self.on_output = on_output  # after the output is posted (a stand-in QA, a log line)
        self.handled = 0
        self._beats = 0
        self._sent: dict[str, int] = {}  # task id -> the report version its last heartbeat carried

    async def run(self, *, limit: int | None = None) -> None:
        """Handle announcements until cancelled (or after ``limit`` tasks handled)."""
        async for item in self.transport.announcements(self.tiers):
            if await self.handle(item.envelope):
                self.handled += 1
            await item.done()
            if limit is not None and self.handled >= limit:
                return

    async def handle(self, ready: dict[str, Any]) -> bool:
        """Do one announced task and post its outcome; False if the attempt was no longer
        current (nothing done)."""
        data = ready.get("data") or {}
        task_id, attempt = str(data["task_id"]), int(data.get("attempt") or 1)
        if not await self.transport.still_current(task_id, attempt):
            return False
        job = Job(task_id, attempt, data)
        wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        job.on_report = lambda: loop.call_soon_threadsafe(wake.set)
        started = time.monotonic()
        beats = asyncio.create_task(self._heartbeats(job, wake))
        try:
            output = await self.handler(job)
        except TaskFailed as exc:
            await self._post("task.failed", job, {"error": exc.error, "retryable": exc.retryable})
            return True
        except Exception as exc:
            log.exception("task %s attempt %s failed in the handler", task_id, attempt)
            await self._post("task.failed", job, {"error": f"{type(exc).__name__}: {exc}", "retryable": True})
            return True
        finally:
            beats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beats
            if job.version != self._sent.pop(job.task_id, -1):
                await self._beat(job)  # the last report, before the outcome
        payload = {
            "artifacts": output.artifacts,
            "output": output.output,
            "model_used": output.model_used,
            "tokens_input": output.tokens_input,
            "tokens_output": output.tokens_output,
            "execution_time_ms": int((time.monotonic() - started) * 1000),
            **output.extra,
        }
        try:
            await self._post("task.output.created", job, {k: v for k, v in payload.items() if v is not None})
        except Invalid as exc:  # the handler's output is malformed: the task fails, the worker goes on
            log.error("task %s: output refused: %s", task_id, exc)
            refused = {"error": f"output refused: {exc.detail}", "retryable": False}
            await self._post("task.failed", job, refused)
            return True
        if self.on_output is not None:
            await self.on_output(job)
        return True

    async def _heartbeats(self, job: Job, wake: asyncio.Event) -> None:
        """A heartbeat now, at each report, and every ``heartbeat_seconds`` in between."""
        while True:
            wake.clear()
            await self._beat(job)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self.heartbeat_seconds)

    async def _beat(self, job: Job) -> None:
        self._beats += 1
        version = job.version
        data = {"task_id": job.task_id, "attempt": job.attempt, "worker_id": self.worker_id}
        data |= {"progress": job.progress, "message": job.message}
        beat_id = ce.stable_id(self.source, "task.progress", job.task_id, job.attempt, self._beats)
        try:
            await self.transport.post(ce.envelope("task.progress", self.source, data, id=beat_id))
            self._sent[job.task_id] = version
        except Exception as exc:  # a lost heartbeat is not the task's failure
            log.warning("heartbeat for %s not sent: %s", job.task_id, exc)

    async def _post(self, kind: str, job: Job, data: dict[str, Any]) -> None:
        body = {"task_id": job.task_id, "attempt": job.attempt, "worker_id": self.worker_id, **data}
        await self.transport.post(ce.envelope(kind, self.source, body))


def as_handler(fn: Handler) -> Callable[[Job], Awaitable[Output]]:
    """An ``async`` handler as is; a plain one run in a thread (the heartbeats go on)."""
    if inspect.iscoroutinefunction(fn):
        return fn

    def threaded(job: Job) -> Awaitable[Output]:
        return asyncio.to_thread(fn, job)  # type: ignore[arg-type]

    return threaded
