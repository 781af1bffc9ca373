"""A streamed GET on the in-process app, read as the app sends it.

httpx's ASGITransport hands a body over only once the response is complete, so through
``Service.client`` a test cannot see that a Server-Sent Events stream is open before acting.
This drives the ASGI app directly: ``wait_for`` returns once the bytes sent so far contain a
marker (the feed's opening ``: event feed`` comment, a task stream's snapshot)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from types import TracebackType
from typing import Any
from urllib.parse import urlencode


class AsgiStream:
    def __init__(
        self,
        app: Any,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.app = app
        self.path = path
        self.query = urlencode(params or {}, doseq=True)
        self.request_headers = {"host": "testserver", **(headers or {})}
        self.status: int | None = None
        self.body = bytearray()
        self.complete = False
        self._changed = asyncio.Event()
        self._disconnect = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AsgiStream:
        self._task = asyncio.create_task(self._run(), name=f"asgi-stream {self.path}")
        await self._until(lambda: self.status is not None, 10.0, "the response to start")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._disconnect.set()  # the client goes away, as a closed connection
        if self._task is not None:
            with contextlib.suppress(TimeoutError):  # wait_for cancels it then
                await asyncio.wait_for(self._task, 5)

    @property
    def text(self) -> str:
        return self.body.decode()

    async def wait_for(self, marker: bytes, timeout: float = 10.0) -> None:
        """Until the body received so far contains ``marker``."""
        await self._until(lambda: marker in self.body, timeout, f"{marker!r} in the stream")

    async def read_to_end(self, timeout: float = 10.0) -> str:
        """The whole body, once the app has closed the stream."""
        await self._until(lambda: self.complete, timeout, "the stream to close")
        return self.text

    async def _until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        try:
            async with asyncio.timeout(timeout):
                while not done():
                    assert self._task is not None
                    if self._task.done():
                        self._task.result()  # the app's error, if it failed
                        raise AssertionError(f"the app ended before {what}; body: {bytes(self.body)!r}")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"waited {timeout:g}s for {what}; body: {bytes(self.body)!r}") from None

    async def _run(self) -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": self.path,
            "raw_path": self.path.encode(),
            "root_path": "",
            "query_string": self.query.encode(),
            "headers": [(k.lower().encode(), v.encode()) for k, v in self.request_headers.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        requested = False

        async def receive() -> dict[str, Any]:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await self._disconnect.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.status = int(message["status"])
            elif message["type"] == "http.response.body":
                self.body += message.get("body", b"")
                self.complete = not message.get("more_body", False)
            self._changed.set()

        try:
            await self.app(scope, receive, send)
        finally:
            self.complete = True
            self._changed.set()
