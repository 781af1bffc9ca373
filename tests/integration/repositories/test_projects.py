"""ProjectRepository on both backends, and the dispatch queues reading a project's own
limit (``max_concurrent``) in place of the configured one."""

from __future__ import annotations

from datetime import timedelta

from orchestration_service.repositories.ports import Storage
from orchestration_service.repositories.projects import Constitution, ProjectRecord
from orchestration_service.repositories.tasks import Submission
from tests.integration.repositories.tasks_data import T0, routed, task


def project(project_id: str, **values: object) -> ProjectRecord:
    fields: dict[str, object] = {
        "name": None,
        "description": None,
        "max_concurrent": None,
        "default_priority": None,
        "default_qa_profile": None,
        "timeout_default_seconds": None,
        "max_attempts_default": None,
        "constitution_version": None,
        "archived_at": None,
        **values,
    }
    return ProjectRecord(project_id=project_id, created_at=T0, updated_at=T0, **fields)  # type: ignore[arg-type]


async def test_add_get_list_update(storage: Storage) -> None:
    async with storage.transaction() as uow:
        assert await uow.projects.add(project("b", name="B", max_concurrent=3))
        assert await uow.projects.add(project("a"))
        assert not await uow.projects.add(project("a", name="again"))  # taken: nothing written
    async with storage.read() as uow:
        got = await uow.projects.get("b")
        assert got == project("b", name="B", max_concurrent=3)
        assert (await uow.projects.get("a")) == project("a")
        assert await uow.projects.get("zzz") is None
    async with storage.transaction() as uow:
        await uow.projects.update("a", {"archived_at": T0 + timedelta(seconds=1), "default_priority": "high"})
    async with storage.read() as uow:
        assert [p.project_id for p in await uow.projects.list(include_archived=False)] == ["b"]
        everything = await uow.projects.list(include_archived=True)
        assert [p.project_id for p in everything] == ["a", "b"]
        assert everything[0].default_priority == "high" and everything[0].archived_at is not None
        only_a = await uow.projects.list(include_archived=True, project_ids=["a"])
        assert [p.project_id for p in only_a] == ["a"]


async def test_constitution_versions_are_all_kept(storage: Storage) -> None:
    v1 = Constitution("a", 1, "# one", "1" * 64, T0, "alice")
    v2 = Constitution("a", 2, "# two", "2" * 64, T0 + timedelta(seconds=1), None)
    async with storage.transaction() as uow:
        await uow.projects.add(project("a"))
        await uow.projects.add(project("b"))
        await uow.projects.add_constitution(v1)
        await uow.projects.add_constitution(v2)
        await uow.projects.update("a", {"constitution_version": 2})
    async with storage.read() as uow:
        assert await uow.projects.constitution("a", 1) == v1
        assert await uow.projects.constitution("a", 2) == v2
        assert await uow.projects.constitution("a", 3) is None
        assert await uow.projects.current_constitutions(["a", "b", "c"]) == {"a": v2}
        assert await uow.projects.current_constitutions([]) == {}


async def test_dispatch_queues_use_each_projects_own_limit(storage: Storage) -> None:
    # "two" may run 2, "five" 5, "plain" the configured limit given to the queries (1).
    rows = [task(n, project_id="two", status="running") for n in range(2)]
    rows += [task(10 + n, project_id="five", status="running") for n in range(2)]
    rows += [task(20, project_id="plain", status="running")]
    queued = ["two", "five", "five", "five", "five", "plain"]
    waiting = [routed(30 + n, project_id=p) for n, p in enumerate(queued)]
    async with storage.transaction() as uow:
        await uow.projects.add(project("two", max_concurrent=2))
        await uow.projects.add(project("five", max_concurrent=5))
        await uow.tasks.insert_many([*rows, *waiting])
    names = ["two", "five", "plain"]
    async with storage.read() as uow:
        assert await uow.tasks.with_waiting_tasks(names, 1) == ["five"]
        assert await uow.tasks.projects_with_waiting_work(1) == ["five"]
    async with storage.transaction() as uow:
        await uow.tasks.lock_projects(names)
        within = await uow.tasks.dispatchable_within(names, 1)
    assert sorted(t["project_id"] for t in within) == ["five"] * 3
    # A lower limit than the tasks in flight: nothing is dispatched, nothing is stopped.
    async with storage.transaction() as uow:
        await uow.projects.update("five", {"max_concurrent": 1})
    async with storage.transaction() as uow:
        assert await uow.tasks.dispatchable_within(names, 1) == []
        assert await uow.tasks.with_waiting_tasks(names, 1) == []


async def test_the_generation_moves_on_every_change(storage: Storage) -> None:
    async with storage.read() as uow:
        assert await uow.projects.generation() == 0
    for expected in (1, 2):
        async with storage.transaction() as uow:
            await uow.projects.changed()
        async with storage.read() as uow:
            assert await uow.projects.generation() == expected


async def test_a_submission_creates_its_project_when_asked(storage: Storage) -> None:
    hot = storage.task_hot_paths
    assert await hot.project("p-new") is None
    first = task(1, project_id="p-new")
    assert await hot.submit(Submission(first, [], [], new_project=True))
    created = await hot.project("p-new")
    assert (
        created is not None and created.created_at == first["created_at"] and created.max_concurrent is None
    )
    # A second one finds the row there: nothing changes, the task is written.
    async with storage.transaction() as uow:
        await uow.projects.update("p-new", {"max_concurrent": 4})
    assert await hot.submit(Submission(task(2, project_id="p-new"), [], [], new_project=True))
    again = await hot.project("p-new")
    assert again is not None and again.max_concurrent == 4
    assert await hot.submit(Submission(task(3, project_id="p-other"), [], []))
    assert await hot.project("p-other") is None  # not asked to: no row
