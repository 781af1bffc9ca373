"""Issue 16, defect 12: open event streams are capped per process, each buffers a bounded
number of events, and a reader that falls a whole buffer behind is cut off and resumes with
Last-Event-ID, missing nothing and seeing nothing twice.

Streams that must stay open while the test acts are driven at the ASGI level (the in-process
HTTP client only returns a response once it is complete): the test plays a client that reads
as much as it is allowed to, then stops reading, as a stalled TCP reader does, or hangs up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from orchestration_service.sse import sse_comment
from tests.conftest import Service, make_settings, start_service
from tests.integration.test_http_events import parse_sse, read_feed, running
from tests.integration.test_tasks_api import submit


class RawStream:
    """One GET held open at the ASGI level. ``allowance``: body chunks taken before the client
    stops reading (None: it reads everything); ``hang_up()`` disconnects."""

    def __init__(self, app: Any, path: str, *, query: str = "", allowance: int | None = None) -> None:
        self.body = bytearray()
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.chunks = 0
        self.complete = False
        self.allowance = allowance
        self.first = asyncio.Event()
        self._gone = asyncio.Event()
        self._asked = False
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(b"host", b"testserver"), (b"accept", b"text/event-stream")],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        self.task = asyncio.create_task(app(scope, self._receive, self._send))

    def hang_up(self) -> None:
        self._gone.set()

    @property
    def text(self) -> str:
        return self.body.decode()

    async def wait_first(self, timeout: float = 10.0) -> None:
        waiter = asyncio.ensure_future(self.first.wait())
        await asyncio.wait((waiter, self.task), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        assert self.first.is_set(), f"no first bytes (status {self.status}: {self.text})"

    async def _receive(self) -> dict[str, Any]:
        if not self._asked:
            self._asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = {k.decode(): v.decode() for k, v in message.get("headers", [])}
            return
        if self.allowance is not None and self.chunks >= self.allowance:
            await asyncio.Event().wait()  # a reader that stopped reading: the write never ends
        self.chunks += 1
        self.body += message.get("body", b"")
        self.complete = not message.get("more_body", False)
        if message.get("body"):
            self.first.set()


async def wait_until(predicate: Any, what: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def small(clean_db: str) -> AsyncIterator[Service]:
    """The service with room for two streams of ten buffered events each."""
    settings = make_settings(clean_db, events={"max_open_streams": 2, "stream_buffer_events": 10})
    svc, lifespan = await start_service(settings)
    try:
        yield svc
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)


async def test_streams_beyond_the_cap_are_refused_with_retry_after(small: Service) -> None:
    tid = await running(small)
    feed = RawStream(small.app, "/api/v1/events")
    task_stream = RawStream(small.app, f"/api/v1/tasks/{tid}/stream")
    await feed.wait_first()
    await task_stream.wait_first()
    assert small.container.notifier.open_streams == 2

    # The cap counts both kinds: a third stream of either kind is refused.
    for path in ("/api/v1/events", f"/api/v1/tasks/{tid}/stream"):
        r = await small.client.get(path, params={"after": 0, "limit": 1} if path.endswith("events") else None)
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert int(r.headers["Retry-After"]) > 0
        assert r.json()["type"].endswith(":too-many-streams")

    # A client that hangs up gives its slot back: a new stream is served.
    feed.hang_up()
    await asyncio.wait_for(feed.task, 10)
    assert small.container.notifier.open_streams == 1
    r = await small.client.get("/api/v1/events", params={"after": 0, "limit": 1})
    assert r.status_code == 200, r.text
    task_stream.hang_up()
    await asyncio.wait_for(task_stream.task, 10)
    await wait_until(lambda: small.container.notifier.open_streams == 0, "every slot is free")
    await wait_until(lambda: small.container.notifier.listener_count == 0, "every listener left")


async def test_a_slot_is_released_however_the_stream_ends(small: Service) -> None:
    notifier = small.container.notifier
    tid = await running(small)
    # Limit reached.
    assert len(await read_feed(small, after=0, limit=1)) == 1
    assert notifier.open_streams == 0
    # The task reached its final state (the task stream closes by itself).
    assert (await small.client.post(f"/api/v1/tasks/{tid}/cancel")).status_code == 200
    r = await small.client.get(f"/api/v1/tasks/{tid}/stream")
    assert r.status_code == 200 and parse_sse(r.text)[0]["event"] == "snapshot"
    assert notifier.open_streams == 0
    # An error inside the stream.
    from orchestration_service.sse import SSEResponse

    slot = notifier.open_stream()

    async def broken() -> AsyncIterator[bytes]:
        yield sse_comment("about to fail")
        raise RuntimeError("the stream broke")

    stream = RawStream(_app_of(SSEResponse(broken(), slot)), "/x")
    with pytest.raises(RuntimeError, match="the stream broke"):
        await asyncio.wait_for(stream.task, 10)
    assert slot.released and notifier.open_streams == 0
    # Twelve sequential streams through a cap of two: no slot leaked on the way.
    for _ in range(12):
        assert (await small.client.get("/api/v1/events", params={"after": 0, "limit": 1})).status_code == 200


def _app_of(response: Any) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await response(scope, receive, send)

    return app


async def test_a_slow_reader_is_cut_and_resumes_with_last_event_id(small: Service) -> None:
    c = small.container
    start = await c.event_log.head()
    # It takes the opening comment and one batch of events, then stops reading.
    reader = RawStream(small.app, "/api/v1/events", allowance=2)
    await reader.wait_first()
    for i in range(15):  # more events than its buffer holds
        await submit(small, description=f"task {i}")

    # Cut: the stream ends although the reader never read on, and leaves nothing behind.
    await asyncio.wait_for(reader.task, 10)
    assert c.notifier.open_streams == 0
    await wait_until(lambda: c.notifier.listener_count == 0, "the cut listener left")

    received = parse_sse(reader.text)
    expected = [e.seq for e in await c.event_log.read(start, 10_000)]
    assert len(expected) > 10 and len(received) < len(expected)
    last = received[-1]["id"] if received else str(start)
    resumed = await read_feed(small, last_event_id=last, limit=len(expected) - len(received))
    assert [int(e["id"]) for e in received + resumed] == expected, "every event once, in order"
