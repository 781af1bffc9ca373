"""Stopping background tasks at shutdown."""

from __future__ import annotations

import asyncio
import io
import logging
from typing import Any

log = logging.getLogger(__name__)

STOP_WAIT_SECONDS = 5.0


async def cancel_and_wait(task: asyncio.Task[Any], name: str) -> None:
    """Cancel a background task and wait for it, but not forever: shutdown must end even if
    a database call under it does not answer its cancellation (seen rarely in the tests: a
    30 s stall while a driver call ran out its own timeout)."""
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=STOP_WAIT_SECONDS)
    if not done:
        # Where it is stuck: the call that does not answer its cancellation.
        where = io.StringIO()
        task.print_stack(limit=12, file=where)
        log.warning(
            "%s did not stop within %.0fs of being cancelled; leaving it. %s",
            name,
            STOP_WAIT_SECONDS,
            where.getvalue().strip(),
        )
    elif not task.cancelled() and task.exception() is not None:
        log.warning("%s ended with %r", name, task.exception())
