"""``descendants``: every subtask under a task, all levels, shallowest first, bounded."""

from __future__ import annotations

from orchestration_service.repositories.ports import Storage
from tests.integration.repositories.tasks_data import task


async def test_descendants_all_levels_shallowest_first_and_bounded(storage: Storage) -> None:
    root, other = task(0), task(1)
    a = task(5, parent_id=root["id"], depth=1)
    b = task(4, parent_id=root["id"], depth=1)
    a1 = task(2, parent_id=a["id"], depth=2)  # older than its parent's siblings: still after them
    a2 = task(3, parent_id=a["id"], depth=2)
    a1x = task(9, parent_id=a1["id"], depth=3)
    stranger = task(6, parent_id=other["id"], depth=1)
    async with storage.transaction() as uow:
        await uow.tasks.insert_many([root, other, a, b, a1, a2, a1x, stranger])
    async with storage.read() as uow:
        everything = await uow.tasks.descendants(root["id"], limit=100)
        under_a = await uow.tasks.descendants(a["id"], limit=100)
        first_three = await uow.tasks.descendants(root["id"], limit=3)
        assert await uow.tasks.descendants(a1x["id"], limit=100) == []
    assert [r["id"] for r in everything] == [b["id"], a["id"], a1["id"], a2["id"], a1x["id"]]
    assert [r["id"] for r in under_a] == [a1["id"], a2["id"], a1x["id"]]
    assert [r["id"] for r in first_three] == [b["id"], a["id"], a1["id"]]
    assert set(everything[0]) == {
        "id",
        "parent_id",
        "project_id",
        "status",
        "description",
        "depth",
        "created_at",
    }
    assert everything[2]["parent_id"] == a["id"] and everything[2]["depth"] == 2
