"""TaskRepository on both backends: every port method, PostgreSQL's hand-written statements
(write_transition, claim_event_and_lock, the dispatch queues) and SQLite's alike."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from orchestration_service.repositories.ports import Storage
from orchestration_service.repositories.tasks import TaskFilter
from tests.integration.repositories.tasks_data import T0, event, history, task


async def _pending_events(storage: Storage) -> int:
    async with storage.read() as uow:
        return (await uow.outbox.pending_stats())[0]


async def test_insert_and_read_back_one_many_and_by_idempotency_key(storage: Storage) -> None:
    a, b = task(1, idempotency_key="k1", request_hash="h"), task(2, project_id="p2")
    async with storage.transaction() as uow:
        await uow.tasks.insert_many([a, b])
        await uow.tasks.insert_many([])
    async with storage.read() as uow:
        got = await uow.tasks.get(a["id"])
        assert got is not None and {k: got[k] for k in a} == a
        assert got["routed_at"] is None and got["artifacts"] is None
        assert await uow.tasks.get(uuid.uuid4()) is None
        keyed = await uow.tasks.get_by_idempotency_key("p1", "k1")
        assert keyed is not None and keyed["id"] == a["id"]
        assert await uow.tasks.get_by_idempotency_key("p2", "k1") is None
        many = await uow.tasks.get_many([a["id"], b["id"], uuid.uuid4()])
        assert set(many) == {a["id"], b["id"]} and many[b["id"]]["project_id"] == "p2"
        assert await uow.tasks.get_many([]) == {}
    async with storage.transaction() as uow:
        locked = await uow.tasks.get(a["id"], for_update=True)
        assert locked is not None and locked["id"] == a["id"]


async def test_get_with_flags_says_whether_there_are_subtasks_and_dependencies(storage: Storage) -> None:
    parent, child, other = task(1), task(2), task(3)
    child["parent_id"] = parent["id"]
    async with storage.transaction() as uow:
        await uow.tasks.insert_many([parent, child, other])
        await uow.tasks.add_dependencies([{"task_id": other["id"], "depends_on_id": child["id"]}])
    async with storage.read() as uow:
        p, c, o = [await uow.tasks.get_with_flags(t["id"]) for t in (parent, child, other)]
        assert await uow.tasks.get_with_flags(uuid.uuid4()) is None
    for read in (p, c, o):
        assert read is not None and "_has_children" not in read.task
    assert p is not None and (p.has_children, p.has_deps) == (True, False)
    assert c is not None and (c.has_children, c.has_deps) == (False, False)
    assert o is not None and (o.has_children, o.has_deps) == (False, True)
    assert o.task["description"] == "task 3"


async def test_update_and_update_many_with_different_columns(storage: Storage) -> None:
    a, b, c = task(1), task(2), task(3)
    async with storage.transaction() as uow:
        await uow.tasks.insert_many([a, b, c])
        await uow.tasks.update(a["id"], {"status": "running", "attempt": 1})
        await uow.tasks.update_many(
            [(b["id"], {"status": "running"}), (c["id"], {"output": {"x": 1}, "status": "validating"})]
        )
    async with storage.read() as uow:
        got = await uow.tasks.get_many([a["id"], b["id"], c["id"]])
    assert (got[a["id"]]["status"], got[a["id"]]["attempt"]) == ("running", 1)
    assert got[b["id"]]["status"] == "running"
    assert (got[c["id"]]["status"], got[c["id"]]["output"]) == ("validating", {"x": 1})


@pytest.mark.parametrize("same_columns", [True, False])
async def test_write_transition_writes_rows_history_and_events_together(
    storage: Storage, same_columns: bool
) -> None:
    a, b = task(1), task(2)
    async with storage.transaction() as uow:
        await uow.tasks.insert_many([a, b])
    now = T0 + timedelta(minutes=1)
    second = {"status": "running", "updated_at": now}
    if not same_columns:  # PostgreSQL's one-statement form needs one set of columns: else two
        second["attempt"] = 1
    async with storage.transaction() as uow:
        await uow.tasks.write_transition(
            [(a["id"], {"status": "cancelled", "updated_at": now, "completed_at": now}), (b["id"], second)]
            if not same_columns
            else [(a["id"], {"status": "running", "updated_at": now}), (b["id"], second)],
            [history(a, "moved", to="running", at=now), history(b, "moved", to="running", at=now)],
            [event(a, "task.status.running"), event(b, "task.status.running")],
            now,
        )
    async with storage.read() as uow:
        got = await uow.tasks.get_many([a["id"], b["id"]])
        assert [h["reason"] for h in await uow.tasks.history(a["id"])] == ["moved"]
    assert got[b["id"]]["status"] == "running" and got[b["id"]]["updated_at"] == now
    assert got[a["id"]]["status"] == ("running" if same_columns else "cancelled")
    assert await _pending_events(storage) == 2


async def test_a_failed_transition_writes_nothing(storage: Storage) -> None:
    a = task(1)
    async with storage.transaction() as uow:
        await uow.tasks.insert_many([a])

    class Boom(Exception):
        pass

    async def fail_midway() -> None:
        async with storage.transaction() as uow:
            await uow.tasks.write_transition(
                [(a["id"], {"status": "running"})], [history(a, to="running")], [event(a)], T0
            )
            raise Boom

    with pytest.raises(Boom):
        await fail_midway()
    async with storage.read() as uow:
        got = await uow.tasks.get(a["id"])
        assert got is not None and got["status"] == "pending"
        assert await uow.tasks.history(a["id"]) == []
    assert await _pending_events(storage) == 0


async def test_claim_event_and_lock_claims_once_under_the_tasks_project(storage: Storage) -> None:
    a = task(1, project_id="mine")
    async with storage.transaction() as uow:
        await uow.tasks.insert_many([a])
    args = {"event_id": "e1", "event_type": "task.validated", "source": "qa", "outcome": "processed"}
    async with storage.transaction() as uow:
        first = await uow.tasks.claim_event_and_lock(task_id=a["id"], **args)
    async with storage.transaction() as uow:
        again = await uow.tasks.claim_event_and_lock(task_id=a["id"], **args)
        missing = await uow.tasks.claim_event_and_lock(task_id=uuid.uuid4(), **{**args, "event_id": "e2"})
    assert first.claimed and first.task is not None and first.task["id"] == a["id"]
    assert "_claimed" not in first.task and first.task["project_id"] == "mine"
    assert not again.claimed and again.task is not None and again.task["id"] == a["id"]
    assert not missing.claimed and missing.task is None
    async with storage.read() as uow:
        assert await uow.processed_events.get_outcome("mine", "e1") == "processed"
        assert await uow.processed_events.get_outcome("mine", "e2") is None


async def test_history_and_subtasks_in_order(storage: Storage) -> None:
    parent = task(0)
    kids = [task(n, parent_id=parent["id"]) for n in (3, 1, 2)]
    async with storage.transaction() as uow:
        await uow.tasks.insert_many([parent, *kids])
        await uow.tasks.add_history([history(parent, "first"), history(parent, "second")])
        await uow.tasks.add_history([])
    async with storage.read() as uow:
        entries = await uow.tasks.history(parent["id"])
        subtasks = await uow.tasks.subtasks(parent["id"])
        assert await uow.tasks.subtasks(kids[0]["id"]) == []
    assert [h["reason"] for h in entries] == ["first", "second"]
    assert entries[0]["details"] == {"why": "first"} and entries[0]["to_status"] == "pending"
    assert [s["description"] for s in subtasks] == ["task 1", "task 2", "task 3"]
    assert set(subtasks[0]) == {"id", "status", "description", "tier", "domain", "created_at", "completed_at"}


async def test_dependencies(storage: Storage) -> None:
    a, b, c = task(1), task(2), task(3)
    async with storage.transaction() as uow:
        await uow.tasks.insert_many([a, b, c])
        await uow.tasks.add_dependencies(
            [{"task_id": c["id"], "depends_on_id": a["id"]}, {"task_id": c["id"], "depends_on_id": b["id"]}]
        )
        await uow.tasks.add_dependencies([])
    async with storage.read() as uow:
        deps = await uow.tasks.dependencies_of([a["id"], c["id"]])
        assert await uow.tasks.dependencies_of([]) == {}
    assert set(deps) == {c["id"]} and sorted(deps[c["id"]]) == sorted([a["id"], b["id"]])


async def test_find_and_count_with_filters_and_keyset(storage: Storage) -> None:
    rows = [
        task(n, project_id="p1" if n % 2 else "p2", priority="high" if n < 3 else "normal") for n in range(6)
    ]
    rows[5]["status"] = "running"
    async with storage.transaction() as uow:
        await uow.tasks.insert_many(rows)
    async with storage.read() as uow:
        every = await uow.tasks.find(TaskFilter(), limit=10)
        assert [r["description"] for r in every] == [f"task {n}" for n in range(5, -1, -1)]
        page = await uow.tasks.find(TaskFilter(), limit=2, after=(every[1]["created_at"], every[1]["id"]))
        assert [r["description"] for r in page] == ["task 3", "task 2"]
        assert [r["description"] for r in await uow.tasks.find(TaskFilter(), limit=2, offset=4)] == [
            "task 1",
            "task 0",
        ]
        p1 = TaskFilter(project_ids=["p1"])
        assert [r["description"] for r in await uow.tasks.find(p1, limit=10)] == [
            "task 5",
            "task 3",
            "task 1",
        ]
        both = TaskFilter(project_ids=["p1", "p2"], statuses=["pending", "running"])
        assert await uow.tasks.count(both) == 6
        assert await uow.tasks.count(TaskFilter(statuses=["running"])) == 1
        assert await uow.tasks.count(TaskFilter(priority="high")) == 3
        window = TaskFilter(created_after=T0 + timedelta(seconds=1), created_before=T0 + timedelta(seconds=3))
        assert await uow.tasks.count(window) == 2
        assert await uow.tasks.count(TaskFilter(), cap=2) == 3  # counts no further than cap + 1
        assert await uow.tasks.count(TaskFilter(project_ids=[])) == 0


async def test_find_by_parent(storage: Storage) -> None:
    parent = task(0)
    kid = task(1, parent_id=parent["id"])
    async with storage.transaction() as uow:
        await uow.tasks.insert_many([parent, kid, task(2)])
    async with storage.read() as uow:
        found = await uow.tasks.find(TaskFilter(parent_id=parent["id"]), limit=10)
    assert [r["id"] for r in found] == [kid["id"]]


async def test_counts_oldest_waiting_and_recent_times(storage: Storage) -> None:
    done = [
        task(
            n,
            status="completed",
            started_at=T0,
            completed_at=T0 + timedelta(seconds=10 * n),
            execution_time_ms=n,
        )
        for n in (1, 2, 3)
    ]
    done[2]["tier"] = "large"
    parent_done = task(4, status="completed", completed_at=T0 + timedelta(hours=1), execution_time_ms=99)
    waiting = [task(8, priority="high"), task(6, project_id="p2"), task(7)]
    async with storage.transaction() as uow:
        await uow.tasks.insert_many([*done, parent_done, *waiting])
    async with storage.read() as uow:
        by_project = await uow.tasks.counts_by_status(None)
        assert by_project == {"p1": {"completed": 4, "pending": 2}, "p2": {"pending": 1}}
        assert await uow.tasks.counts_by_status(["p2", "nope"]) == {"p2": {"pending": 1}}
        assert await uow.tasks.counts_by_state() == {"completed": 4, "pending": 3}
        oldest = await uow.tasks.oldest_waiting("p1")
        assert oldest is not None and oldest["id"] == waiting[2]["id"] and oldest["priority"] == "normal"
        assert await uow.tasks.oldest_waiting("nope") is None
        assert await uow.tasks.recent_execution_times("p1") == [99, 3, 2, 1]
        assert await uow.tasks.recent_execution_times(None, limit=2) == [99, 3]
        # A decomposed parent (never started) is no sample; newest first.
        assert await uow.tasks.recent_durations() == [27.0, 18.0, 9.0]
        assert await uow.tasks.recent_durations(tier="large") == [27.0]
        assert await uow.tasks.recent_durations(domain="nope") == []


async def test_cancellable_since(storage: Storage) -> None:
    old = task(0)
    started = task(1, status="running", started_at=T0 + timedelta(minutes=5))
    child = task(2, depth=1, created_at=T0 + timedelta(minutes=3))
    parent = task(3, depth=0, created_at=T0 + timedelta(minutes=4))
    finished = task(4, status="completed", created_at=T0 + timedelta(minutes=6))
    other = task(5, project_id="p2", created_at=T0 + timedelta(minutes=6))
    async with storage.transaction() as uow:
        await uow.tasks.insert_many([old, started, child, parent, finished, other])
    async with storage.read() as uow:
        ids = await uow.tasks.cancellable_since("p1", T0 + timedelta(minutes=1), ["pending", "running"])
    assert ids == [started["id"], parent["id"], child["id"]]  # by depth (parents first), then creation
