"""DeadLetterRepository on both backends."""

from __future__ import annotations

from datetime import timedelta

from orchestration_service.domain.ids import uuid7
from orchestration_service.repositories.dead_letters import DeadLetter, DeadLetterFilter
from orchestration_service.repositories.ports import Storage
from tests.integration.repositories.tasks_data import T0


def letter(n: int, *, project_id: str | None = "p1", source: str = "broker") -> DeadLetter:
    return DeadLetter(
        id=uuid7(),
        event_id=f"ev-{n}",
        event_type="dats.task.failed",
        source=source,
        kind="unknown-task",
        reason=f"reason {n}",
        project_id=project_id,
        payload=f'{{"id": "ev-{n}"}}',
        payload_truncated=False,
        created_at=T0 + timedelta(seconds=n),
    )


async def test_add_get_page_filter_replayed_delete(storage: Storage) -> None:
    letters = [letter(1), letter(2, project_id=None, source="ingress"), letter(3, project_id="p2"), letter(4)]
    async with storage.transaction() as uow:
        for x in letters:
            await uow.dead_letters.add(x)
    async with storage.read() as uow:
        assert await uow.dead_letters.get(letters[0].id) == letters[0]
        everything = await uow.dead_letters.page(DeadLetterFilter(), limit=10, cap=100)
        p1 = await uow.dead_letters.page(DeadLetterFilter(project_ids=["p1"]), limit=10, cap=100)
        ingress = await uow.dead_letters.page(DeadLetterFilter(source="ingress"), limit=10, cap=100)
        first = await uow.dead_letters.page(DeadLetterFilter(), limit=3, cap=100)
        last = first.rows[-1]
        rest = await uow.dead_letters.page(
            DeadLetterFilter(), limit=3, after=(last.created_at, last.id), cap=100
        )
    assert [x.event_id for x in everything.rows] == ["ev-4", "ev-3", "ev-2", "ev-1"]
    assert [x.event_id for x in p1.rows] == ["ev-4", "ev-1"]  # the unattributed one is left out
    assert [x.event_id for x in ingress.rows] == ["ev-2"]
    assert first.has_more and [x.event_id for x in rest.rows] == ["ev-1"]
    async with storage.transaction() as uow:
        await uow.dead_letters.replayed(letters[0].id, kind="schema", reason="still bad", at=T0)
        assert await uow.dead_letters.delete(letters[1].id)
        assert not await uow.dead_letters.delete(letters[1].id)
    async with storage.read() as uow:
        again = await uow.dead_letters.get(letters[0].id)
        assert await uow.dead_letters.get(letters[1].id) is None
    assert again is not None
    assert (again.kind, again.reason, again.replays, again.last_replayed_at) == ("schema", "still bad", 1, T0)


async def test_trim_keeps_the_newest(storage: Storage) -> None:
    async with storage.transaction() as uow:
        for n in range(5):
            await uow.dead_letters.add(letter(n))
        assert await uow.dead_letters.trim(10) == 0
        assert await uow.dead_letters.trim(2) == 3
    async with storage.read() as uow:
        page = await uow.dead_letters.page(DeadLetterFilter(), limit=10, cap=100)
    assert [x.event_id for x in page.rows] == ["ev-4", "ev-3"]
