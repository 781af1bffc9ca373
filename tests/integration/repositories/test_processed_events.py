"""ProcessedEventRepository on both backends."""

from __future__ import annotations

from datetime import timedelta

from orchestration_service.repositories.ports import Storage


async def _claim(storage: Storage, project: str, event_id: str, outcome: str = "applied") -> bool:
    async with storage.transaction() as uow:
        return await uow.processed_events.claim(project, event_id, "task.validated", "qa", outcome)


async def test_an_event_is_claimed_once_per_project(storage: Storage) -> None:
    assert await _claim(storage, "p1", "e1")
    assert not await _claim(storage, "p1", "e1"), "a duplicate"
    assert await _claim(storage, "p2", "e1"), "another project's id is its own"
    async with storage.transaction() as uow:
        assert await uow.processed_events.claim("p3", "e1", "task.validated", None, "applied")


async def test_outcomes_are_kept_and_changed(storage: Storage) -> None:
    await _claim(storage, "p", "e", outcome="pending")
    async with storage.transaction() as uow:
        assert await uow.processed_events.get_outcome("p", "e") == "pending"
        await uow.processed_events.set_outcome("p", "e", "rejected")
        await uow.processed_events.set_outcome("p", "missing", "rejected")  # nothing to change
    async with storage.read() as uow:
        assert await uow.processed_events.get_outcome("p", "e") == "rejected"
        assert await uow.processed_events.get_outcome("other", "e") is None
        assert await uow.processed_events.get_outcome("p", "missing") is None


async def test_a_rolled_back_unit_of_work_unclaims(storage: Storage) -> None:
    class Boom(Exception):
        pass

    try:
        async with storage.transaction() as uow:
            assert await uow.processed_events.claim("p", "e", "task.validated", "qa", "applied")
            raise Boom
    except Boom:
        pass
    assert await _claim(storage, "p", "e"), "claimable again: its effects were rolled back"


async def test_purge_forgets_the_oldest_ids_first_within_the_limit(storage: Storage) -> None:
    for event_id in ("e1", "e2", "e3"):
        await _claim(storage, "p", event_id)
    async with storage.transaction() as uow:
        assert await uow.processed_events.purge_before(timedelta(days=1)) == 0  # none old enough
        assert await uow.processed_events.purge_before(timedelta(0), limit=2) == 2
    async with storage.read() as uow:
        assert await uow.processed_events.get_outcome("p", "e1") is None
        assert await uow.processed_events.get_outcome("p", "e2") is None
        assert await uow.processed_events.get_outcome("p", "e3") == "applied"
    assert await _claim(storage, "p", "e1"), "a forgotten id can be claimed again"
