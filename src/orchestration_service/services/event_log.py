"""The event log behind the SSE feeds: the outbox rows, in ``seq`` order.

``seq`` is given after commit by the single relay leader, in contiguous blocks, so a reader
that has seen ``seq = n`` has seen everything up to ``n``: resuming after ``n`` never skips an
event and never repeats one, even when writers commit out of order.

One :class:`LogNotifier` per process reads new rows once and fans them out to every
listener in memory, so a thousand listeners cost one query per batch, not a thousand.
Each listener's queue is bounded (``events.stream_buffer_events``): a reader that falls that
far behind is cut off (its stream closes) and resumes with ``Last-Event-ID``, so a slow
client costs a bounded amount of memory. The number of open streams per process is capped
too (``events.max_open_streams``); one more is refused with 503 and ``Retry-After``.
It wakes on the local relay's signal, on the storage's word that a leader in another
replica numbered entries (``LogFeed``), and on a slow poll as a safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from orchestration_service.background import cancel_and_wait
from orchestration_service.domain.errors import StreamsBusy
from orchestration_service.domain.topics import topic_matches
from orchestration_service.repositories.outbox.port import LogEntry
from orchestration_service.repositories.ports import Storage

log = logging.getLogger(__name__)

_BATCH_LIMIT = 500  # entries a follower takes from its queue at once


__all__ = ["EventLog", "LogEntry", "LogFilter", "LogNotifier", "StreamSlot"]


@dataclass(slots=True)
class LogFilter:
    types: Sequence[str] = ()  # RabbitMQ topic patterns
    project_ids: Sequence[str] | None = None  # None = every project
    subject: str | None = None
    predicate: Callable[[LogEntry], bool] | None = None

    def matches(self, e: LogEntry) -> bool:
        if self.types and not any(topic_matches(p, e.event_type) for p in self.types):
            return False
        if self.project_ids is not None and e.project_id not in self.project_ids:
            return False
        if self.subject is not None and e.subject != self.subject:
            return False
        return self.predicate is None or self.predicate(e)


STREAM_RETRY_AFTER_SECONDS = 5


@dataclass(eq=False, slots=True)
class StreamSlot:
    """One open stream's place under ``events.max_open_streams``. ``cut`` is set when the
    stream's reader fell a whole buffer behind: whoever serves the stream closes it."""

    notifier: LogNotifier
    cut: asyncio.Event = field(default_factory=asyncio.Event)
    released: bool = False

    def release(self) -> None:
        if not self.released:  # idempotent: every way a stream ends may call it
            self.released = True
            self.notifier.open_streams -= 1


@dataclass(eq=False, slots=True)
class _Listener:
    queue: asyncio.Queue[LogEntry]
    cut: asyncio.Event
    overflowed: bool = False


def _matching(
    entries: Sequence[LogEntry], flt: LogFilter, position: int, until: int | None = None
) -> tuple[list[LogEntry], int]:
    """The entries after ``position`` (and up to ``until``) that ``flt`` lets through, and
    the position reached."""
    out = []
    for e in entries:
        if until is not None and e.seq > until:
            break
        if e.seq <= position:
            continue
        position = e.seq
        if flt.matches(e):
            out.append(e)
    return out, position


class LogNotifier:
    def __init__(
        self,
        storage: Storage,
        *,
        poll_seconds: float = 1.0,
        max_streams: int = 256,
        buffer_events: int = 1000,
    ) -> None:
        self.storage = storage
        self.feed = storage.log_feed()
        self.poll_seconds = poll_seconds
        self.max_streams = max_streams
        self.buffer_events = buffer_events
        self.open_streams = 0
        self.last_seq = 0
        self._listeners: set[_Listener] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    @property
    def listener_count(self) -> int:
        return len(self._listeners)

    def open_stream(self) -> StreamSlot:
        """A slot for one more stream, or :class:`StreamsBusy` (503) when all are taken."""
        if self.open_streams >= self.max_streams:
            raise StreamsBusy(
                f"this process serves at most {self.max_streams} open streams; retry shortly",
                retry_after=STREAM_RETRY_AFTER_SECONDS,
            )
        self.open_streams += 1
        return StreamSlot(self)

    async def start(self) -> None:
        async with self.storage.read() as uow:
            self.last_seq = await uow.outbox.last_seq()
        self._task = asyncio.create_task(self._run(), name="event-log-notifier")

    async def stop(self) -> None:
        self._stopping = True  # see dispatcher._Loop.stop: a cancellation can be lost on 3.11
        if self._task is not None:
            await cancel_and_wait(self._task, "event-log notifier")
        await self.feed.close()

    async def _run(self) -> None:
        backoff = 0.2
        while not self._stopping:
            try:
                await self.feed.listen(self.wake)
                await self._fan_out()
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("event log notifier: %s; retrying in %.1fs", exc, backoff)
                await self.feed.close()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            self._wake.clear()

    async def _fan_out(self) -> None:
        if not self._listeners:
            return  # nobody to tell; subscribe() catches up from the database
        while True:
            self._wake.clear()
            entries = await self.feed.read(self.last_seq, 1000)
            if not entries:
                return
            for listener in list(self._listeners):
                if listener.overflowed:
                    continue
                for e in entries:
                    try:
                        listener.queue.put_nowait(e)
                    except asyncio.QueueFull:
                        # A reader a whole buffer behind is cut off; it resumes from its
                        # Last-Event-ID, read from the database, not from this process's memory.
                        listener.overflowed = True
                        listener.cut.set()
                        break
            self.last_seq = entries[-1].seq

    @contextlib.asynccontextmanager
    async def subscribe(self, cut: asyncio.Event | None = None) -> AsyncIterator[tuple[_Listener, int]]:
        """A listener receiving every entry after the returned position, until its buffer
        overflows (then ``cut`` is set)."""
        listener = _Listener(asyncio.Queue(self.buffer_events), cut or asyncio.Event())
        if not self._listeners:
            # The fan-out idles without listeners: move to the head before the first joins.
            async with self.storage.read() as uow:
                self.last_seq = max(self.last_seq, await uow.outbox.last_seq())
        self._listeners.add(listener)
        try:
            yield listener, self.last_seq
        finally:
            self._listeners.discard(listener)


class EventLog:
    def __init__(self, storage: Storage, notifier: LogNotifier) -> None:
        self.storage = storage
        self.notifier = notifier

    async def head(self) -> int:
        async with self.storage.read() as uow:
            return await uow.outbox.last_seq()

    async def read(self, after: int, limit: int) -> Sequence[LogEntry]:
        async with self.storage.read() as uow:
            return await uow.outbox.read_log(after, limit)

    async def follow(
        self,
        after: int | None,
        flt: LogFilter,
        *,
        heartbeat: float = 15.0,
        cut: asyncio.Event | None = None,
    ) -> AsyncIterator[list[LogEntry] | None]:
        """Every matching entry after ``after`` (None = from now), in order, in batches of
        what has arrived. Yields None when ``heartbeat`` seconds pass without an entry.

        Ends when the reader falls a whole buffer behind (``cut`` is set then): the client
        resumes after the last entry it received, so nothing is missed or repeated."""
        async with self.notifier.subscribe(cut) as (listener, live_from):
            position = live_from if after is None else after
            # Catch up from the database to where the live fan-out starts.
            while position < live_from and not listener.overflowed:
                batch = await self.read(position, 500)
                if not batch:
                    break
                out, position = _matching(batch, flt, position, until=live_from)
                if out:
                    yield out
                if batch[-1].seq >= live_from:
                    break
            position = max(position, live_from)
            queue = listener.queue
            while not listener.overflowed:
                if queue.empty():
                    try:
                        arrived = [await asyncio.wait_for(queue.get(), heartbeat)]
                    except TimeoutError:
                        yield None
                        continue
                else:
                    arrived = []
                # Take everything already queued at once: waiting for each entry cost
                # a turn of the event loop, and on a busy process the feed fell behind.
                while len(arrived) < _BATCH_LIMIT and not queue.empty():
                    arrived.append(queue.get_nowait())
                out, position = _matching(arrived, flt, position)
                if out:
                    yield out
