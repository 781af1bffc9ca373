"""TaskRepository's dispatch queues, routing claims and timeouts on both backends
(PostgreSQL's LATERAL and loose-index-scan statements, SQLite's loops), the hot paths
(submission, status read) and the gauges."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from orchestration_service.db.engine import Database, create_engine
from orchestration_service.repositories.ports import Storage
from orchestration_service.repositories.storage import SqlStorage
from orchestration_service.repositories.tasks import Submission
from tests.conftest import make_settings
from tests.integration.repositories.tasks_data import T0, event, history, routed, task


async def test_dispatch_queues_respect_limits_dependencies_and_order(storage: Storage) -> None:
    busy = [task(n, project_id="full", status="running") for n in range(2)]
    full_waiting = routed(3, project_id="full")
    blocker = task(4, project_id="p1", status="running")
    blocked = routed(5, project_id="p1")
    low, high = routed(6, project_id="p1"), routed(7, project_id="p1", priority="high", priority_rank=3)
    unrouted = task(8, project_id="p1")
    idle_running = task(9, project_id="idle", status="validating")
    async with storage.transaction() as uow:
        await uow.tasks.insert_many(
            [*busy, full_waiting, blocker, blocked, low, high, unrouted, idle_running]
        )
        await uow.tasks.add_dependencies([{"task_id": blocked["id"], "depends_on_id": blocker["id"]}])
    projects = ["p1", "full", "idle", "nobody", "p1"]
    async with storage.read() as uow:
        assert await uow.tasks.in_flight_counts(projects) == {"full": 2, "p1": 1, "idle": 1}
        assert await uow.tasks.with_waiting_tasks(projects, 2) == ["p1"]
        assert await uow.tasks.with_waiting_tasks(projects, 3) == ["full", "p1"]
        assert await uow.tasks.with_waiting_tasks([], 3) == []
        assert sorted(await uow.tasks.projects_with_waiting_work(2)) == ["p1"]
        assert sorted(await uow.tasks.projects_with_waiting_work(3)) == ["full", "p1"]
        assert len(await uow.tasks.projects_with_waiting_work(3, limit=1)) == 1
        queue = await uow.tasks.dispatchable("p1", 10)
        assert [t["id"] for t in queue] == [high["id"], low["id"]]  # priority, then age; none blocked
        assert [t["id"] for t in await uow.tasks.dispatchable("p1", 1)] == [high["id"]]
    async with storage.transaction() as uow:
        await uow.tasks.lock_projects(projects)
        await uow.tasks.lock_projects([])
        within = await uow.tasks.dispatchable_within(projects, 2)
        assert await uow.tasks.dispatchable_within([], 2) == []
    # p1 has one in flight: one free slot at a limit of 2; "full" none.
    assert [t["id"] for t in within] == [high["id"]]
    assert within[0]["options"] == high["options"] and within[0]["routed_at"] == high["routed_at"]
    async with storage.transaction() as uow:
        wider = await uow.tasks.dispatchable_within(projects, 3)
    assert sorted(t["id"] for t in wider) == sorted([full_waiting["id"], high["id"], low["id"]])


async def test_claims_lease_tasks_until_they_expire_and_can_be_released(storage: Storage) -> None:
    first, second, done = task(1), task(2), routed(3)
    async with storage.transaction() as uow:
        await uow.tasks.insert_many([second, first, done])
    now, until = T0 + timedelta(hours=1), T0 + timedelta(hours=1, seconds=30)
    async with storage.transaction() as uow:
        claimed = await uow.tasks.claim_unrouted(now, until, 10)
        assert await uow.tasks.claim_unrouted(now, until, 0) == []
    assert [t["id"] for t in claimed] == [first["id"], second["id"]]
    assert claimed[0]["routing_claimed_until"] == until
    async with storage.transaction() as uow:
        assert await uow.tasks.claim_unrouted(now, until, 10) == []
        assert await uow.tasks.lock_unrouted(now, 10) == []  # leased: not free to route
        assert [t["id"] for t in await uow.tasks.lock_unrouted(until + timedelta(seconds=1), 10)] == [
            first["id"],
            second["id"],
        ]
        await uow.tasks.release_claims([first["id"], done["id"]])
        await uow.tasks.release_claims([])
    async with storage.transaction() as uow:
        free = await uow.tasks.lock_unrouted(now, 10)
        assert await uow.tasks.lock_unrouted(now, 0) == []
    assert [t["id"] for t in free] == [first["id"]]


async def test_mark_routed_only_while_pending_and_unrouted(storage: Storage) -> None:
    a, gone = task(1), task(2, status="cancelled")
    async with storage.transaction() as uow:
        await uow.tasks.insert_many([a, gone])
    values = {"tier": "large", "mode": "single", "routed_at": T0, "routing": {"analyzer": "builtin"}}
    async with storage.transaction() as uow:
        assert await uow.tasks.mark_routed(a["id"], values)
        assert not await uow.tasks.mark_routed(a["id"], values)  # already routed
        assert not await uow.tasks.mark_routed(gone["id"], values)
    async with storage.read() as uow:
        got = await uow.tasks.get(a["id"])
    assert got is not None and got["tier"] == "large" and got["routing"] == {"analyzer": "builtin"}


async def test_overdue_and_row_locks(storage: Storage) -> None:
    late = task(1, status="running", deadline_at=T0 + timedelta(seconds=5))
    later = task(2, status="validating", deadline_at=T0 + timedelta(seconds=10))
    on_time = task(3, status="running", deadline_at=T0 + timedelta(hours=1))
    async with storage.transaction() as uow:
        await uow.tasks.insert_many([later, late, on_time])
    async with storage.transaction() as uow:
        await uow.tasks.lock_rows([later["id"], late["id"]])
        await uow.tasks.lock_rows([])
        overdue = await uow.tasks.overdue(T0 + timedelta(minutes=1), 10)
        assert [t["id"] for t in await uow.tasks.overdue(T0 + timedelta(minutes=1), 1)] == [late["id"]]
    assert [t["id"] for t in overdue] == [late["id"], later["id"]]


async def test_hot_path_submit_writes_task_history_and_events(storage: Storage) -> None:
    hot = storage.task_hot_paths
    rows = [task(n, routed_at=T0 if n == 0 else None) for n in range(5)]
    done = await asyncio.gather(
        *(
            hot.submit(Submission(r, [history(r), history(r, "routed")], [event(r), event(r, "task.x")]))
            for r in rows
        )
    )
    assert done == [True] * 5
    async with storage.read() as uow:
        got = await uow.tasks.get_many([r["id"] for r in rows])
        assert {k: got[rows[0]["id"]][k] for k in rows[0]} == rows[0]
        assert got[rows[0]["id"]]["updated_at"] == rows[0]["created_at"]
        assert [h["reason"] for h in await uow.tasks.history(rows[3]["id"])] == ["submitted", "routed"]
        assert (await uow.outbox.pending_stats())[0] == 10


async def test_hot_path_submit_refuses_a_taken_idempotency_key(storage: Storage) -> None:
    hot = storage.task_hot_paths
    first = task(1, idempotency_key="k", request_hash="h1")
    again = task(2, idempotency_key="k", request_hash="h2")
    elsewhere = task(3, idempotency_key="k", project_id="p2")
    assert await hot.submit(Submission(first, [history(first)], [event(first)]))
    assert not await hot.submit(Submission(again, [history(again)], [event(again)]))
    assert await hot.submit(Submission(elsewhere, [history(elsewhere)], [event(elsewhere)]))
    async with storage.read() as uow:
        assert await uow.tasks.get(again["id"]) is None
        assert await uow.tasks.history(again["id"]) == []
        assert (await uow.outbox.pending_stats())[0] == 2


async def test_hot_path_status_reads_the_task_and_its_flags(storage: Storage) -> None:
    parent, plain = task(1), task(2)
    kid = task(3, parent_id=parent["id"])
    async with storage.transaction() as uow:
        await uow.tasks.insert_many([parent, plain, kid])
        await uow.tasks.add_dependencies([{"task_id": kid["id"], "depends_on_id": plain["id"]}])
    hot = storage.task_hot_paths
    p, q, k, none = await asyncio.gather(
        *(hot.status(i) for i in (parent["id"], plain["id"], kid["id"], uuid.uuid4()))
    )
    assert none is None
    assert p is not None and (p.has_children, p.has_deps) == (True, False)
    assert q is not None and (q.has_children, q.has_deps) == (False, False)
    assert k is not None and (k.has_children, k.has_deps) == (False, True)
    assert {key: q.task[key] for key in plain} == plain and "_has_deps" not in q.task


async def test_gauges_read_tasks_by_state_and_the_outbox_backlog(storage: Storage) -> None:
    async with storage.transaction(write=False) as uow:
        assert (await uow.gauges.read()).oldest_pending_task_seconds == 0.0, "no pending task: 0"
    a = task(1)
    # Older than the pending task, but running: not waiting, so not what the age measures.
    async with storage.transaction() as uow:
        await uow.tasks.insert_many([a, task(-3600, status="running")])
        await uow.outbox.add([event(a)])
    async with storage.transaction(write=False) as uow:
        assert await uow.gauges.try_lock()
        reading = await uow.gauges.read()
    assert reading.tasks_by_state == {"pending": 1, "running": 1}
    assert reading.outbox_pending == 1 and reading.outbox_oldest_seconds >= 0
    expected = (datetime.now(UTC) - a["created_at"]).total_seconds()
    assert abs(reading.oldest_pending_task_seconds - expected) < 60, (reading, expected)


async def test_hot_paths_without_the_asyncpg_pool_use_units_of_work(clean_db: str) -> None:
    """A service run without the hot paths' pool (or before it opened) takes the same rows
    through ordinary transactions."""
    settings = make_settings(clean_db)
    db = Database(create_engine(settings.storage), storage=settings.storage)  # no fast pool
    await db.open()
    try:
        hot = SqlStorage(db).task_hot_paths
        first, again = task(1, idempotency_key="k"), task(2, idempotency_key="k")
        assert await hot.submit(Submission(first, [history(first)], [event(first)]))
        assert not await hot.submit(Submission(again, [history(again)], [event(again)]))
        read = await hot.status(first["id"])
        assert read is not None and read.task["id"] == first["id"] and not read.has_children
        assert await hot.status(again["id"]) is None
    finally:
        await db.close()
