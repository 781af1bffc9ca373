"""The event log's reading, filtering, fan-out and stream limits, on in-memory fakes of the
storage ports (no database: what is tested here is the use case, not the SQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from orchestration_service.domain.errors import StreamsBusy
from orchestration_service.domain.events import OutgoingEvent
from orchestration_service.services.event_log import EventLog, LogEntry, LogFilter, LogNotifier
from tests.unit.fakes_events import EventStore, FakeStorage
from tests.waiting import eventually


def entry(
    seq: int, event_type: str = "task.status.running", *, project: str = "p", subject: str = "t"
) -> LogEntry:
    return LogEntry(seq, event_type, subject, project, {"id": f"e{seq}", "data": {"n": seq}})


@pytest.fixture
async def log() -> AsyncIterator[EventLog]:
    storage = FakeStorage()
    notifier = LogNotifier(storage, poll_seconds=30, max_streams=2, buffer_events=3)
    await notifier.start()
    try:
        yield EventLog(storage, notifier)
    finally:
        await notifier.stop()


def store_of(log: EventLog) -> EventStore:
    storage = log.storage
    assert isinstance(storage, FakeStorage)
    return storage.store


async def test_head_and_read(log: EventLog) -> None:
    assert await log.head() == 0
    store_of(log).append([entry(1), entry(2), entry(3)])
    assert await log.head() == 3
    assert [e.seq for e in await log.read(1, 10)] == [2, 3]
    assert [e.seq for e in await log.read(0, 2)] == [1, 2]


def test_filters() -> None:
    e = entry(1, "task.status.completed", project="p1", subject="t1")
    assert LogFilter().matches(e)
    assert LogFilter(types=["task.status.*"]).matches(e)
    assert LogFilter(types=["task.#", "x"]).matches(e)
    assert not LogFilter(types=["task.created"]).matches(e)
    assert LogFilter(project_ids=["p1", "p2"]).matches(e)
    assert not LogFilter(project_ids=[]).matches(e)
    assert LogFilter(subject="t1").matches(e)
    assert not LogFilter(subject="t2").matches(e)
    assert not LogFilter(predicate=lambda x: x.seq > 1).matches(e)


async def test_follow_catches_up_then_goes_live_in_order_filtered(log: EventLog) -> None:
    store = store_of(log)
    store.append([entry(1), entry(2, project="other"), entry(3)])
    got: list[int] = []
    flt = LogFilter(project_ids=["p"])

    async def read() -> None:
        async for batch in log.follow(0, flt, heartbeat=30):
            assert batch is not None
            got.extend(e.seq for e in batch)
            if got and got[-1] >= 6:
                return

    reader = asyncio.create_task(read())
    await eventually(lambda: got == [1, 3], what="the catch-up")
    store.append([entry(4, project="other"), entry(5), entry(6)])
    log.notifier.wake()  # as the relay does once it numbered them
    await asyncio.wait_for(reader, 5)
    assert got == [1, 3, 5, 6], "each matching entry once, in order"


async def test_follow_from_now_skips_the_past_and_sends_heartbeats(log: EventLog) -> None:
    store_of(log).append([entry(1)])
    stream = log.follow(None, LogFilter(), heartbeat=0.01)
    assert await anext(stream) is None  # nothing new: a heartbeat
    store_of(log).append([entry(2)])
    log.notifier.wake()
    batch = await eventually(lambda: anext(stream), what="the live entry")
    assert [e.seq for e in batch] == [2]
    await stream.aclose()


async def test_a_feed_wake_up_from_another_process_reaches_the_listeners(log: EventLog) -> None:
    stream = log.follow(None, LogFilter(), heartbeat=30)
    first = asyncio.ensure_future(anext(stream))
    await eventually(lambda: log.notifier.listener_count == 1, what="the listener")
    storage = log.storage
    assert isinstance(storage, FakeStorage)
    relay = storage.relay_coordination()
    await relay.try_lead(lambda: None, silent_after=60)
    async with storage.transaction() as uow:
        await uow.outbox.add([OutgoingEvent("task.created", {"task_id": "t"}, subject="t", project_id="p")])
    assert await relay.assign_sequence(10) == 1  # wakes the listening feed, not the notifier directly
    batch = await asyncio.wait_for(first, 5)
    assert batch is not None and [e.event_type for e in batch] == ["task.created"]
    await stream.aclose()


async def test_a_reader_a_whole_buffer_behind_is_cut(log: EventLog) -> None:
    cut = asyncio.Event()
    stream = log.follow(None, LogFilter(), heartbeat=30, cut=cut)
    first = asyncio.ensure_future(anext(stream))
    await eventually(lambda: log.notifier.listener_count == 1, what="the listener")
    store_of(log).append([entry(i) for i in range(1, 6)])  # buffer of 3
    log.notifier.wake()
    await asyncio.wait_for(cut.wait(), 5)
    batch = await asyncio.wait_for(first, 5)
    assert batch is not None and [e.seq for e in batch] == [1, 2, 3]
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_open_streams_are_capped(log: EventLog) -> None:
    a, b = log.notifier.open_stream(), log.notifier.open_stream()
    with pytest.raises(StreamsBusy):
        log.notifier.open_stream()
    a.release()
    a.release()  # idempotent
    c = log.notifier.open_stream()
    assert log.notifier.open_streams == 2
    b.release()
    c.release()
    assert log.notifier.open_streams == 0
