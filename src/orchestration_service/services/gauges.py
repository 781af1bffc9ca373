"""The database gauges of /metrics (tasks by state, outbox backlog), read in the background
so that a scrape never touches the database."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from typing import Protocol

from orchestration_service.background import cancel_and_wait
from orchestration_service.redaction import error_text
from orchestration_service.repositories.ports import Storage

log = logging.getLogger(__name__)


class GaugeSink(Protocol):
    """Where readings go (``metrics.Metrics``)."""

    def database_read(
        self,
        tasks_by_state: Mapping[str, int],
        outbox_pending: int,
        outbox_oldest_seconds: float,
        oldest_pending_task_seconds: float = 0.0,
    ) -> None: ...

    def database_reachable(self, reachable: bool) -> None: ...


class GaugeRefresher:
    """Reads the database gauges every ``interval`` seconds (jittered, so replicas drift
    apart), in the background. A round another replica is reading right now is skipped."""

    def __init__(self, metrics: GaugeSink, storage: Storage, interval: float) -> None:
        self.metrics = metrics
        self.storage = storage
        self.interval = interval
        self.reads = 0  # rounds that read the database (tests and the curious)
        self.skipped = 0  # rounds another reader held the lock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="metrics-gauges")

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task, "metrics gauges")
            self._task = None

    async def refresh(self) -> bool:
        """One round; True if it read the database."""
        try:
            async with self.storage.transaction(write=False) as uow:
                repo = uow.gauges
                if not await repo.try_lock():
                    self.skipped += 1
                    self.metrics.database_reachable(True)
                    return False
                reading = await repo.read()
        except Exception as exc:
            log.warning("metrics: cannot read the database gauges: %s", error_text(exc))
            self.metrics.database_reachable(False)
            return False
        self.reads += 1
        self.metrics.database_read(
            reading.tasks_by_state,
            reading.outbox_pending,
            reading.outbox_oldest_seconds,
            reading.oldest_pending_task_seconds,
        )
        return True

    async def _run(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.interval * random.uniform(0.8, 1.2))
