"""Server-Sent Events framing."""

from __future__ import annotations

from typing import Any

import orjson

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse_message(event_id: int | str, event: str, data: Any) -> bytes:
    # orjson never emits a raw newline, so the data stays on one line as SSE requires.
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (
        str(event_id).encode(),
        event.encode(),
        orjson.dumps(data, default=str),
    )


def sse_comment(text: str) -> bytes:
    return b": " + text.encode() + b"\n\n"
