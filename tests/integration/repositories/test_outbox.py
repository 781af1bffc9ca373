"""OutboxRepository, RelayCoordination and LogFeed on both backends, and the storage's ping."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy.ext.asyncio import create_async_engine

from orchestration_service.domain.events import OutgoingEvent
from orchestration_service.repositories.outbox import LogEntry, UnpublishedEvent
from orchestration_service.repositories.ports import Storage
from tests.waiting import eventually

FOREVER = 3600.0  # a silence no live leader reaches: nobody is ended as silent


def _events(n: int, project: str = "p") -> list[OutgoingEvent]:
    return [
        OutgoingEvent(
            "task.status.running", {"task_id": f"t{i}", "i": i}, subject=f"t{i}", project_id=project
        )
        for i in range(n)
    ]


async def _add(storage: Storage, events: list[OutgoingEvent]) -> None:
    async with storage.transaction() as uow:
        await uow.outbox.add(events)


async def _sequence(storage: Storage, limit: int = 100) -> int:
    async with storage.transaction() as uow:
        return await uow.outbox.assign_sequence(limit)


async def test_added_events_are_pending_and_unnumbered_until_sequenced(storage: Storage) -> None:
    async with storage.read() as uow:
        assert await uow.outbox.pending_stats() == (0, 0.0)
    await _add(storage, _events(3))
    async with storage.read() as uow:
        pending, oldest = await uow.outbox.pending_stats()
        assert pending == 3 and 0.0 <= oldest < 60
        assert await uow.outbox.read_log(0, 10) == []
        assert await uow.outbox.unpublished(10) == []
        assert await uow.outbox.last_seq() == 0


async def test_a_rolled_back_unit_of_work_adds_nothing(storage: Storage) -> None:
    class Boom(Exception):
        pass

    try:
        async with storage.transaction() as uow:
            await uow.outbox.add(_events(2))
            raise Boom
    except Boom:
        pass
    async with storage.read() as uow:
        assert await uow.outbox.pending_stats() == (0, 0.0)


async def test_sequence_numbers_are_contiguous_in_commit_order_and_bounded(storage: Storage) -> None:
    first, second = _events(3, "a"), _events(2, "b")
    await _add(storage, first)
    await _add(storage, second)
    assert await _sequence(storage, limit=4) == 4
    assert await _sequence(storage, limit=4) == 1
    assert await _sequence(storage) == 0
    async with storage.read() as uow:
        log = await uow.outbox.read_log(0, 10)
        assert [e.seq for e in log] == [1, 2, 3, 4, 5]
        assert [e.envelope["id"] for e in log] == [ev.id for ev in first + second]
        assert log[0] == LogEntry(1, "task.status.running", "t0", "a", first[0].envelope())
        assert [e.seq for e in await uow.outbox.read_log(2, 2)] == [3, 4]
        assert await uow.outbox.read_log(5, 10) == []
        assert await uow.outbox.last_seq() == 5


async def test_unpublished_rows_follow_the_watermark(storage: Storage) -> None:
    events = _events(4)
    await _add(storage, events)
    await _sequence(storage)
    async with storage.transaction() as uow:
        rows = await uow.outbox.unpublished(3)
        assert [r.seq for r in rows] == [1, 2, 3]
        assert rows[0] == UnpublishedEvent(
            rows[0].id, 1, "task.status.running", events[0].exchange, events[0].envelope()
        )
        await uow.outbox.mark_published(2)
    async with storage.read() as uow:
        assert [r.seq for r in await uow.outbox.unpublished(10)] == [3, 4]
        assert (await uow.outbox.pending_stats())[0] == 2


async def test_the_published_watermark_never_moves_back(storage: Storage, clean_db: str) -> None:
    # Moved from tests/integration/test_outbox.py, its assertions kept.
    engine = create_async_engine(clean_db)
    try:
        async with storage.transaction() as uow:
            repo = uow.outbox
            assert await repo.pending_stats() == (0, 0.0)
            await repo.mark_published(5)  # no row yet: inserted
            await repo.mark_published(3)  # a leader that lost its lock late
            await repo.mark_published(4)
        async with engine.connect() as conn:
            stored = await conn.exec_driver_sql("SELECT id, published_seq FROM relay_progress")
            assert [tuple(r) for r in stored] == [(1, 5)]
        async with storage.transaction() as uow:
            await uow.outbox.mark_published(9)
        async with engine.connect() as conn:
            stored = await conn.exec_driver_sql("SELECT published_seq FROM relay_progress")
            assert stored.scalar_one() == 9
    finally:
        await engine.dispose()


async def test_purge_removes_old_published_rows_but_keeps_the_newest(storage: Storage) -> None:
    await _add(storage, _events(5))
    await _sequence(storage)
    async with storage.transaction() as uow:
        await uow.outbox.mark_published(5)
    async with storage.transaction() as uow:
        assert await uow.outbox.purge_published_before(timedelta(days=1)) == 0  # none old enough
        # Everything is older than "no retention": all but the newest, in at most `limit` a call.
        assert await uow.outbox.purge_published_before(timedelta(0), limit=3) == 3
        assert await uow.outbox.purge_published_before(timedelta(0)) == 1
        assert await uow.outbox.purge_published_before(timedelta(0)) == 0
    async with storage.read() as uow:
        assert [e.seq for e in await uow.outbox.read_log(0, 10)] == [5]
        assert await uow.outbox.last_seq() == 5
    await _add(storage, _events(1))
    await _sequence(storage)
    async with storage.read() as uow:
        assert await uow.outbox.last_seq() == 6, "numbers continue after a purge"


async def test_unpublished_rows_are_never_purged(storage: Storage) -> None:
    await _add(storage, _events(3))
    await _sequence(storage)
    async with storage.transaction() as uow:
        assert await uow.outbox.purge_published_before(timedelta(0)) == 0
    async with storage.read() as uow:
        assert len(await uow.outbox.unpublished(10)) == 3


# -- the relay's coordination ------------------------------------------------------------


async def test_a_commit_that_wrote_outbox_rows_wakes_the_relay_after_commit(storage: Storage) -> None:
    relay = storage.relay_coordination()
    woken: list[bool] = []
    relay.on_local_commit(lambda: woken.append(True))
    async with storage.transaction() as uow:
        await uow.outbox.add(_events(1))
        assert woken == [], "not before the commit"
    assert woken == [True]
    async with storage.transaction() as uow:
        await uow.outbox.add([])  # nothing written: no wake-up
    assert woken == [True]
    await relay.close()


async def test_one_relay_leads_and_another_takes_over_once_it_steps_down(storage: Storage) -> None:
    first, second = storage.relay_coordination(), storage.relay_coordination()
    try:
        assert not first.leading
        assert await first.try_lead(lambda: None, silent_after=FOREVER, timeout=10)
        assert first.leading
        assert await first.try_lead(lambda: None, silent_after=FOREVER), "already leading"
        await first.check()
        assert not await second.try_lead(lambda: None, silent_after=FOREVER)
        assert not second.leading
        await second.step_down()  # a follower's step-down changes nothing
        assert first.leading
        await first.step_down()
        assert not first.leading
        assert await eventually(lambda: second.try_lead(lambda: None, silent_after=FOREVER), what="B leads")
        assert second.leading
    finally:
        await first.close()
        await second.close()


async def test_an_abandoned_leadership_is_lost_and_can_be_taken(storage: Storage) -> None:
    first, second = storage.relay_coordination(), storage.relay_coordination()
    try:
        assert await first.try_lead(lambda: None, silent_after=FOREVER)
        first.abandon()
        assert not first.leading
        await first.step_down()
        assert await eventually(lambda: second.try_lead(lambda: None, silent_after=FOREVER), what="B leads")
    finally:
        await first.close()
        await second.close()


async def test_a_followers_wake_up_reaches_the_leader(storage: Storage) -> None:
    leader, follower = storage.relay_coordination(), storage.relay_coordination()
    woken = asyncio.Event()
    try:
        assert await leader.try_lead(woken.set, silent_after=FOREVER)
        await follower.wake_leader()
        await asyncio.wait_for(woken.wait(), 10)
    finally:
        await leader.close()
        await follower.close()


async def test_the_leader_numbers_publishes_and_wakes_every_feed(storage: Storage) -> None:
    leader = storage.relay_coordination()
    feed = storage.log_feed()
    numbered = asyncio.Event()
    try:
        await feed.listen(numbered.set)
        await feed.listen(numbered.set)  # idempotent
        assert await leader.try_lead(lambda: None, silent_after=FOREVER)
        events = _events(3)
        await _add(storage, events)
        assert await leader.assign_sequence(2) == 2
        await asyncio.wait_for(numbered.wait(), 10)
        numbered.clear()
        assert await leader.assign_sequence(10) == 1
        await asyncio.wait_for(numbered.wait(), 10)
        assert await leader.assign_sequence(10) == 0
        rows = await leader.unpublished(10)
        assert [(r.seq, r.envelope["id"]) for r in rows] == [(i + 1, e.id) for i, e in enumerate(events)]
        await leader.mark_published(2)
        assert [r.seq for r in await leader.unpublished(10)] == [3]
        await leader.mark_published(1)  # never back
        assert [r.seq for r in await leader.unpublished(10)] == [3]
        log = await feed.read(1, 10)
        assert [e.seq for e in log] == [2, 3]
        assert log[0] == LogEntry(2, "task.status.running", "t1", "p", events[1].envelope())
    finally:
        await leader.close()
        await feed.close()


async def test_a_feed_reads_without_listening_and_after_closing(storage: Storage) -> None:
    await _add(storage, _events(2))
    await _sequence(storage)
    feed = storage.log_feed()
    assert [e.seq for e in await feed.read(0, 10)] == [1, 2]
    await feed.listen(lambda: None)
    assert [e.seq for e in await feed.read(1, 10)] == [2]
    await feed.close()
    assert [e.seq for e in await feed.read(0, 1)] == [1]
    await feed.close()  # twice is fine


async def test_a_closed_feed_is_woken_no_more(storage: Storage) -> None:
    leader, feed = storage.relay_coordination(), storage.log_feed()
    woken: list[bool] = []
    try:
        await feed.listen(lambda: woken.append(True))
        await feed.close()
        assert await leader.try_lead(lambda: None, silent_after=FOREVER)
        await _add(storage, _events(1))
        assert await leader.assign_sequence(10) == 1
        # A later feed that listens is woken: the earlier one, closed, is not.
        later = asyncio.Event()
        await feed.listen(later.set)
        await _add(storage, _events(1))
        assert await leader.assign_sequence(10) == 1
        await asyncio.wait_for(later.wait(), 10)
        assert woken == []
    finally:
        await leader.close()
        await feed.close()


async def test_ping(storage: Storage) -> None:
    await storage.ping()
    await storage.ping()  # PostgreSQL: the same connection again
