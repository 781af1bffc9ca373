"""The latest progress of every task someone follows in this process, read once per interval
for all of them.

Each task stream used to read its task's progress itself, every ``events.sse_progress_seconds``
and again on every batch of events it was woken for: with many streams open, as many reads a
second. A stream now registers its task here (``watch``) and looks at the board, which reads the
progress of every watched task in one statement per interval, and only while a stream is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterator
from typing import Any

from orchestration_service.repositories.ports import Storage

log = logging.getLogger(__name__)

READ_CHUNK = 500  # task ids per statement


class ProgressBoard:
    def __init__(self, storage: Storage, interval: float) -> None:
        self.storage = storage
        self.interval = interval
        self._watchers: dict[uuid.UUID, int] = {}
        self._latest: dict[uuid.UUID, dict[str, Any] | None] = {}
        self._loop: asyncio.Task[None] | None = None
        self.reads = 0  # statements run (tests and debugging)

    @contextlib.contextmanager
    def watch(self, task_id: uuid.UUID, current: dict[str, Any] | None) -> Iterator[None]:
        """While inside, the board keeps ``task_id``'s progress (starting from ``current``,
        which the caller has just read)."""
        if task_id not in self._watchers:
            self._latest[task_id] = current
        self._watchers[task_id] = self._watchers.get(task_id, 0) + 1
        if self._loop is None or self._loop.done():
            self._loop = asyncio.get_running_loop().create_task(self._run(), name="progress-board")
        try:
            yield
        finally:
            left = self._watchers[task_id] - 1
            if left:
                self._watchers[task_id] = left
            else:
                del self._watchers[task_id]
                self._latest.pop(task_id, None)

    def latest(self, task_id: uuid.UUID) -> dict[str, Any] | None:
        return self._latest.get(task_id)

    async def _run(self) -> None:
        # Ends when nobody watches: no background work while no stream is open.
        while self._watchers:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the streams keep their last value; the next read may work
                log.debug("progress board: read failed: %s", exc)

    async def refresh(self) -> None:
        ids = list(self._watchers)
        for start in range(0, len(ids), READ_CHUNK):
            chunk = ids[start : start + READ_CHUNK]
            async with self.storage.read() as uow:
                found = await uow.tasks.progress_of(chunk)
            self.reads += 1
            for task_id, progress in found.items():
                if task_id in self._watchers:
                    self._latest[task_id] = progress

    async def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
