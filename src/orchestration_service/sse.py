"""Server-Sent Events framing, and the response that serves a stream within its slot."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

if TYPE_CHECKING:
    from orchestration_service.services.event_log import StreamSlot

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_END_GRACE_SECONDS = 1.0  # a cut reader gets this long to take the end of the response

log = logging.getLogger(__name__)


def sse_message(event_id: int | str, event: str, data: Any) -> bytes:
    # orjson never emits a raw newline, so the data stays on one line as SSE requires.
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (
        str(event_id).encode(),
        event.encode(),
        orjson.dumps(data, default=str),
    )


def sse_comment(text: str) -> bytes:
    return b": " + text.encode() + b"\n\n"


class SSEResponse(StreamingResponse):
    """A ``text/event-stream`` response holding a stream slot until it ends, however it ends
    (done, client gone, error, or cut), and closed when the slot's ``cut`` is set, even while
    a write to a reader that stopped reading is pending."""

    def __init__(self, content: AsyncIterator[bytes], slot: StreamSlot) -> None:
        super().__init__(content, media_type="text/event-stream", headers=SSE_HEADERS)
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._serve(receive, send)
        finally:
            self.slot.release()
            # Run the generator's cleanup (its listener leaves the notifier) now, not at GC.
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(RuntimeError):
                    await aclose()

    async def _serve(self, receive: Receive, send: Send) -> None:
        body = asyncio.ensure_future(self.stream_response(send))
        gone = asyncio.ensure_future(self._disconnected(receive))
        cut = asyncio.ensure_future(self.slot.cut.wait())
        try:
            done, _ = await asyncio.wait((body, gone, cut), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (body, gone, cut):
                task.cancel()
            await asyncio.gather(body, gone, cut, return_exceptions=True)
        if body in done and not body.cancelled():
            exc = body.exception()
            if exc is not None and not isinstance(exc, OSError):  # OSError: the client left
                raise exc
            return
        if gone in done:
            return
        log.info("closed a stream whose reader fell a whole buffer behind; it may resume with Last-Event-ID")
        # End the response properly when the reader still takes bytes; one that stopped
        # reading does not get it, and the server closes the connection.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                send({"type": "http.response.body", "body": b"", "more_body": False}),
                _END_GRACE_SECONDS,
            )

    @staticmethod
    async def _disconnected(receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
