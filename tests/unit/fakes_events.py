"""In-memory fakes of the storage ports the event side and the API keys use
(``repositories.ports.Storage``: the outbox, processed events, API keys, the relay's
coordination and the feed), for use-case tests where a database adds nothing. They keep
the ports' promises the use cases rely on (numbers in commit order, the watermark never
moves back, one leader, wake-ups) and nothing more; the real implementations are held to
the same promises by tests/integration/repositories."""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from orchestration_service.domain.events import OutgoingEvent
from orchestration_service.repositories.api_keys import ApiKeyRecord
from orchestration_service.repositories.outbox import LogEntry, UnpublishedEvent


@dataclass
class EventStore:
    """What the fakes share: the outbox rows and who leads and listens."""

    unnumbered: list[OutgoingEvent] = field(default_factory=list)
    log: list[tuple[LogEntry, str]] = field(default_factory=list)  # (entry, exchange)
    published_seq: int = 0
    claimed: dict[tuple[str, str], str] = field(default_factory=dict)
    api_keys: dict[uuid.UUID, ApiKeyRecord] = field(default_factory=dict)
    leader: FakeRelayCoordination | None = None
    wake_leader: Callable[[], None] | None = None
    feeds: dict[FakeLogFeed, Callable[[], None]] = field(default_factory=dict)
    on_commit: Callable[[], None] = lambda: None

    def append(self, entries: Sequence[LogEntry]) -> None:
        """Numbered entries, as if another process's leader had numbered them."""
        self.log.extend((e, "dats.tasks") for e in entries)

    def assign(self, limit: int) -> int:
        taken, self.unnumbered = self.unnumbered[:limit], self.unnumbered[limit:]
        seq = self.log[-1][0].seq if self.log else 0
        for i, ev in enumerate(taken, start=1):
            entry = LogEntry(seq + i, ev.name, ev.subject, ev.project_id, ev.envelope())
            self.log.append((entry, ev.exchange))
        if taken:
            for wake in list(self.feeds.values()):
                wake()
        return len(taken)

    def read(self, after: int, limit: int) -> list[LogEntry]:
        return [e for e, _ in self.log if e.seq > after][:limit]

    def unpublished(self, limit: int) -> list[UnpublishedEvent]:
        rows = [(e, x) for e, x in self.log if e.seq > self.published_seq][:limit]
        return [UnpublishedEvent(e.seq, e.seq, e.event_type, x, e.envelope) for e, x in rows]

    def mark(self, through_seq: int) -> None:
        self.published_seq = max(self.published_seq, through_seq)


class FakeOutbox:
    def __init__(self, store: EventStore, written: list[OutgoingEvent]) -> None:
        self.store = store
        self.written = written

    async def add(self, events: Sequence[OutgoingEvent]) -> None:
        self.written.extend(events)

    async def assign_sequence(self, limit: int) -> int:
        return self.store.assign(limit)

    async def unpublished(self, limit: int) -> Sequence[UnpublishedEvent]:
        return self.store.unpublished(limit)

    async def mark_published(self, through_seq: int) -> None:
        self.store.mark(through_seq)

    async def read_log(self, after: int, limit: int) -> Sequence[LogEntry]:
        return self.store.read(after, limit)

    async def last_seq(self) -> int:
        return self.store.log[-1][0].seq if self.store.log else 0

    async def pending_stats(self) -> tuple[int, float]:
        pending = len(self.store.unnumbered) + len(self.store.unpublished(1_000_000))
        return pending, 0.0

    async def purge_published_before(self, retention: timedelta, limit: int = 10_000) -> int:
        return 0  # the fakes keep no times


class FakeProcessedEvents:
    def __init__(self, store: EventStore) -> None:
        self.store = store

    async def claim(
        self, project_id: str, event_id: str, event_type: str, source: str | None, outcome: str
    ) -> bool:
        if (project_id, event_id) in self.store.claimed:
            return False
        self.store.claimed[project_id, event_id] = outcome
        return True

    async def set_outcome(self, project_id: str, event_id: str, outcome: str) -> None:
        if (project_id, event_id) in self.store.claimed:
            self.store.claimed[project_id, event_id] = outcome

    async def get_outcome(self, project_id: str, event_id: str) -> str | None:
        return self.store.claimed.get((project_id, event_id))

    async def purge_before(self, retention: timedelta, limit: int = 10_000) -> int:
        return 0


class FakeApiKeys:
    """Writes land at once (the fakes' rollback covers only the outbox)."""

    def __init__(self, store: EventStore) -> None:
        self.keys = store.api_keys

    async def insert(self, key: ApiKeyRecord) -> None:
        self.keys[key.id] = key

    async def insert_if_absent(self, key: ApiKeyRecord) -> bool:
        if any(k.key_hash == key.key_hash for k in self.keys.values()):
            return False
        self.keys[key.id] = key
        return True

    async def by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        return next((k for k in self.keys.values() if k.key_hash == key_hash), None)

    async def all(self) -> Sequence[ApiKeyRecord]:
        return sorted(self.keys.values(), key=lambda k: k.created_at)

    async def revoke(self, key_id: uuid.UUID) -> bool:
        key = self.keys.get(key_id)
        if key is None or key.revoked_at is not None:
            return False
        self.keys[key_id] = dataclasses.replace(key, revoked_at=datetime.now(UTC))
        return True


class FakeUnitOfWork:
    def __init__(self, store: EventStore) -> None:
        self.written: list[OutgoingEvent] = []
        self.outbox = FakeOutbox(store, self.written)
        self.processed_events = FakeProcessedEvents(store)
        self.api_keys = FakeApiKeys(store)
        self.hooks: list[Callable[[], None]] = []

    def after_commit(self, hook: Callable[[], None]) -> None:
        self.hooks.append(hook)


class FakeRelayCoordination:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.checks_fail = False
        self.abandoned = 0

    def on_local_commit(self, wake: Callable[[], None]) -> None:
        self.store.on_commit = wake

    async def try_lead(
        self, on_wake: Callable[[], None], *, silent_after: float, timeout: float | None = None
    ) -> bool:
        if self.store.leader not in (None, self):
            return False
        self.store.leader, self.store.wake_leader = self, on_wake
        return True

    @property
    def leading(self) -> bool:
        return self.store.leader is self

    async def check(self) -> None:
        if self.checks_fail or not self.leading:
            raise ConnectionError("the leadership does not answer")

    def abandon(self) -> None:
        self.abandoned += 1
        self._release()

    async def step_down(self) -> None:
        self._release()

    def _release(self) -> None:
        if self.store.leader is self:
            self.store.leader = self.store.wake_leader = None

    async def wake_leader(self) -> None:
        if self.store.wake_leader is not None:
            self.store.wake_leader()

    async def assign_sequence(self, limit: int) -> int:
        return self.store.assign(limit)

    async def unpublished(self, limit: int) -> Sequence[UnpublishedEvent]:
        return self.store.unpublished(limit)

    async def mark_published(self, through_seq: int) -> None:
        self.store.mark(through_seq)

    async def close(self) -> None:
        self._release()


class FakeLogFeed:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.reads = 0

    async def listen(self, on_new: Callable[[], None]) -> None:
        self.store.feeds[self] = on_new

    async def read(self, after: int, limit: int) -> Sequence[LogEntry]:
        self.reads += 1
        return self.store.read(after, limit)

    async def close(self) -> None:
        self.store.feeds.pop(self, None)


class FakeStorage:
    """``Storage`` in memory: a unit of work's outbox rows land in the store at commit."""

    name = "memory"

    def __init__(self, store: EventStore | None = None) -> None:
        self.store = store or EventStore()
        self.pings = 0

    @contextlib.asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator[FakeUnitOfWork]:
        uow = FakeUnitOfWork(self.store)
        yield uow  # an exception here is a rollback: nothing lands
        self.store.unnumbered.extend(uow.written)
        if uow.written:
            self.store.on_commit()
        for hook in uow.hooks:
            hook()

    def read(self) -> contextlib.AbstractAsyncContextManager[FakeUnitOfWork]:
        return self.transaction(write=False)

    async def ping(self) -> None:
        self.pings += 1

    def relay_coordination(self) -> FakeRelayCoordination:
        return FakeRelayCoordination(self.store)

    def log_feed(self) -> FakeLogFeed:
        return FakeLogFeed(self.store)
