"""The outbox relay's logic (leadership, numbering, publishing in order, stepping down) on
in-memory fakes of the storage ports and the memory bus: no database. Both real backends
run the same relay in tests/integration (replicas, failover, half-open connections)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from orchestration_service.config import load_settings
from orchestration_service.domain.events import OutgoingEvent
from orchestration_service.events.memory import MemoryBus
from orchestration_service.events.publisher import OutboxRelay
from tests.unit.fakes_events import FakeRelayCoordination, FakeStorage
from tests.waiting import eventually

SETTINGS = load_settings(
    events={
        "broker_url": "memory://",
        "relay_poll_seconds": 0.2,
        "relay_batch_size": 2,
        "relay_leader_check_seconds": 0.05,
        "relay_leader_timeout_seconds": 1,
    }
)


def events(n: int, project: str = "p") -> list[OutgoingEvent]:
    return [
        OutgoingEvent("task.status.running", {"task_id": f"t{i}"}, subject=f"t{i}", project_id=project)
        for i in range(n)
    ]


async def commit(storage: FakeStorage, batch: list[OutgoingEvent]) -> None:
    async with storage.transaction() as uow:
        await uow.outbox.add(batch)


@pytest.fixture
async def storage() -> FakeStorage:
    return FakeStorage()


@pytest.fixture
async def relay(storage: FakeStorage) -> AsyncIterator[OutboxRelay]:
    relay = OutboxRelay(storage, MemoryBus(), SETTINGS)
    relay.start()
    try:
        yield relay
    finally:
        await relay.stop(flush_timeout=1)


def published_ids(relay: OutboxRelay) -> list[str]:
    bus = relay.bus
    assert isinstance(bus, MemoryBus)
    return [m.envelope["id"] for m in bus.published]


async def test_the_leader_numbers_and_publishes_commits_in_order(
    storage: FakeStorage, relay: OutboxRelay
) -> None:
    sequenced: list[bool] = []
    names: list[str] = []
    relay.on_sequenced.append(lambda: sequenced.append(True))
    relay.on_published.append(names.extend)
    await eventually(lambda: relay.is_leader, what="the relay leads")
    first, second = events(3), events(2, "q")
    await commit(storage, first)  # the commit wakes the relay
    await commit(storage, second)
    await eventually(lambda: relay.published_count == 5, what="everything published")
    assert published_ids(relay) == [e.id for e in first + second]
    assert [e.seq for e, _ in storage.store.log] == [1, 2, 3, 4, 5]
    assert storage.store.published_seq == 5
    assert names == ["task.status.running"] * 5
    assert sequenced, "the feed was told"
    assert relay.last_error is None


async def test_a_follower_wakes_the_leader_and_publishes_nothing(storage: FakeStorage) -> None:
    bus_l, bus_f = MemoryBus(), MemoryBus()
    leader = OutboxRelay(storage, bus_l, SETTINGS)
    leader.start()
    await eventually(lambda: leader.is_leader, what="the first relay leads")
    follower = OutboxRelay(storage, bus_f, SETTINGS)  # its commits now wake it first
    follower.start()
    try:
        batch = events(3)
        await commit(storage, batch)  # the follower's commit: announced to the leader
        await eventually(lambda: leader.published_count == 3, what="the leader publishes")
        assert not follower.is_leader and follower.published_count == 0
        assert [m.envelope["id"] for m in bus_l.published] == [e.id for e in batch]
        assert list(bus_f.published) == []
    finally:
        await follower.stop(flush_timeout=1)
        await leader.stop(flush_timeout=1)


async def test_a_leader_whose_check_fails_steps_down_and_leads_again_once_it_answers(
    storage: FakeStorage, relay: OutboxRelay
) -> None:
    await eventually(lambda: relay.is_leader, what="the relay leads")
    coordination = relay.coordination
    assert isinstance(coordination, FakeRelayCoordination)
    coordination.checks_fail = True
    await eventually(lambda: coordination.abandoned >= 1, what="the hold abandoned")
    coordination.checks_fail = False
    relay.wake()
    await eventually(lambda: relay.is_leader and coordination.leading, what="leading again")
    await commit(storage, events(1))
    await eventually(lambda: relay.published_count == 1, what="published after failover")


async def test_stop_drains_what_is_pending(storage: FakeStorage) -> None:
    relay = OutboxRelay(storage, MemoryBus(), SETTINGS)
    relay.start()
    await eventually(lambda: relay.is_leader, what="the relay leads")
    storage.store.unnumbered.extend(events(5))  # committed without a wake-up
    await relay.stop(flush_timeout=5)
    assert relay.published_count == 5
    assert not relay.is_leader and storage.store.leader is None, "stepped down"
