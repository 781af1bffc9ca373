"""The relay's and the feed's paths on SQLite: one process serves the database, so
leadership and wake-ups stay in memory (one hub per ``Database``) and every statement runs
on the pool."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from orchestration_service.db.engine import Database
from orchestration_service.repositories.outbox.port import LogEntry, UnpublishedEvent
from orchestration_service.repositories.outbox.sql import autocommit


@dataclass(eq=False, slots=True)
class _Hub:
    """Who leads this database's relays in this process, and whom numbering wakes."""

    leader: SqliteRelayCoordination | None = None
    wake_leader: Callable[[], None] | None = None
    feeds: dict[SqliteLogFeed, Callable[[], None]] = field(default_factory=dict)


def _hub(db: Database) -> _Hub:
    # Kept on the database object (not in a module-level map, which would keep every
    # database and its relays alive for good).
    hub = db.in_process.get(__name__)
    if not isinstance(hub, _Hub):
        hub = db.in_process[__name__] = _Hub()
    return hub


class SqliteRelayCoordination:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._hub = _hub(db)

    def on_local_commit(self, wake: Callable[[], None]) -> None:
        self.db.on_outbox_commit = wake

    async def try_lead(
        self, on_wake: Callable[[], None], *, silent_after: float, timeout: float | None = None
    ) -> bool:
        if self._hub.leader not in (None, self):
            return False
        self._hub.leader, self._hub.wake_leader = self, on_wake
        return True

    @property
    def leading(self) -> bool:
        return self._hub.leader is self

    async def check(self) -> None:
        if not self.leading:
            raise ConnectionError("not leading")

    def abandon(self) -> None:
        self._release()

    async def step_down(self) -> None:
        self._release()

    def _release(self) -> None:
        if self._hub.leader is self:
            self._hub.leader = self._hub.wake_leader = None

    async def wake_leader(self) -> None:
        wake = self._hub.wake_leader
        if wake is not None:
            wake()

    async def assign_sequence(self, limit: int) -> int:
        async with autocommit(self.db) as outbox:
            sequenced = await outbox.assign_sequence(limit)
        if sequenced:
            for wake in list(self._hub.feeds.values()):
                wake()
        return sequenced

    async def unpublished(self, limit: int) -> Sequence[UnpublishedEvent]:
        async with autocommit(self.db) as outbox:
            return await outbox.unpublished(limit)

    async def mark_published(self, through_seq: int) -> None:
        async with autocommit(self.db) as outbox:
            await outbox.mark_published(through_seq)

    async def close(self) -> None:
        self._release()


class SqliteLogFeed:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._hub = _hub(db)

    async def listen(self, on_new: Callable[[], None]) -> None:
        self._hub.feeds[self] = on_new

    async def read(self, after: int, limit: int) -> Sequence[LogEntry]:
        async with autocommit(self.db) as outbox:
            return await outbox.read_log(after, limit)

    async def close(self) -> None:
        self._hub.feeds.pop(self, None)
