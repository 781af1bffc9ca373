"""What the metrics refresher may ask of storage: the shared-state gauges of /metrics
(tasks by state, outbox backlog), read by one replica at a time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class GaugeReading:
    tasks_by_state: dict[str, int]
    outbox_pending: int
    outbox_oldest_seconds: float
    oldest_pending_task_seconds: float = 0.0  # 0 when no task is pending


class GaugeRepository(Protocol):
    async def try_lock(self) -> bool:
        """Whether this unit of work got the gauges lock (another replica reading now: no)."""
        ...

    async def read(self) -> GaugeReading: ...
