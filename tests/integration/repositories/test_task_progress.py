"""TaskRepository's progress and heartbeat methods on both backends: a report kept only on a
running task in its attempt and the sender's projects, the later report winning, the due time
moved by the task's own heartbeat seconds, and the running tasks past it."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from orchestration_service.domain.tasks import TaskRecord
from orchestration_service.repositories.ports import Storage
from orchestration_service.repositories.tasks.port import ProgressReport
from tests.integration.repositories.tasks_data import T0, task


def report(t: TaskRecord, value: float, at_s: int, **kw: object) -> ProgressReport:
    at = T0 + timedelta(seconds=at_s)
    return ProgressReport(
        task_id=t["id"],
        attempt=kw.get("attempt"),  # type: ignore[arg-type]
        progress={"value": value, "at": at.isoformat()},
        at=at,
        project_ids=kw.get("projects"),  # type: ignore[arg-type]
    )


async def test_record_progress_keeps_the_latest_report_of_a_running_attempt(storage: Storage) -> None:
    beating = task(1, status="running", attempt=2, heartbeat_seconds=30, heartbeat_due_at=T0)
    plain = task(2, status="running", attempt=1)  # no heartbeat timeout
    waiting, done = task(3), task(4, status="completed", attempt=1)
    async with storage.transaction() as uow:
        await uow.tasks.insert_many([beating, plain, waiting, done])
    now = T0 + timedelta(seconds=100)
    async with storage.transaction() as uow:
        repo = uow.tasks
        assert await repo.record_progress(report(beating, 0.1, 10, attempt=2), now)
        assert not await repo.record_progress(report(beating, 0.2, 5), now)  # older than the kept one
        assert not await repo.record_progress(report(beating, 0.3, 20, attempt=1), now)  # stale attempt
        assert not await repo.record_progress(report(beating, 0.3, 20, projects=["elsewhere"]), now)
        assert await repo.record_progress(report(beating, 0.4, 20, projects=["p1"]), now)
        assert await repo.record_progress(report(plain, 0.5, 1), now)
        assert not await repo.record_progress(report(waiting, 0.5, 1), now)
        assert not await repo.record_progress(report(done, 0.5, 1), now)
    async with storage.read() as uow:
        got = await uow.tasks.get_many([beating["id"], plain["id"], waiting["id"], done["id"]])
    b = got[beating["id"]]
    assert b["progress"] is not None and b["progress"]["value"] == 0.4
    assert b["progress_at"] == T0 + timedelta(seconds=20)
    assert b["heartbeat_due_at"] == now + timedelta(seconds=30)  # moved by its own timeout
    p = got[plain["id"]]
    assert p["progress"] is not None and p["heartbeat_due_at"] is None
    assert got[waiting["id"]]["progress"] is None and got[done["id"]]["progress"] is None


async def test_heartbeat_overdue_lists_running_tasks_past_their_due_time(storage: Storage) -> None:
    late = task(1, status="running", heartbeat_seconds=5, heartbeat_due_at=T0)
    later = task(2, status="running", heartbeat_seconds=5, heartbeat_due_at=T0 + timedelta(seconds=1))
    fresh = task(3, status="running", heartbeat_seconds=5, heartbeat_due_at=T0 + timedelta(hours=1))
    answered = task(4, status="validating", heartbeat_seconds=5, heartbeat_due_at=T0)  # output came
    off = task(5, status="running")
    async with storage.transaction() as uow:
        await uow.tasks.insert_many([late, later, fresh, answered, off])
    async with storage.transaction() as uow:
        due = await uow.tasks.heartbeat_overdue(T0 + timedelta(minutes=1), 10)
        assert [t["id"] for t in due] == [late["id"], later["id"]]
        assert [t["id"] for t in await uow.tasks.heartbeat_overdue(T0 + timedelta(minutes=1), 1)] == [
            late["id"]
        ]


async def test_the_hot_path_keeps_each_tasks_latest_report_when_reports_arrive_together(
    storage: Storage,
) -> None:
    rows = [task(i, status="running", attempt=1, heartbeat_seconds=10) for i in range(20)]
    async with storage.transaction() as uow:
        await uow.tasks.insert_many(rows)
    now = T0 + timedelta(minutes=5)
    fast = storage.task_hot_paths
    # Each task twice (its later report second) and a report of a stale attempt, all at once:
    # on PostgreSQL they share statements, a task never twice in one.
    reports = [report(t, 0.1, 1) for t in rows] + [report(t, 0.2, 2) for t in rows]
    reports += [report(rows[0], 0.9, 3, attempt=2)]
    kept = await asyncio.gather(*(fast.record_progress(r, now) for r in reports))
    # Every later report is kept; an earlier one only if it went first (the order they run in is
    # the backend's); the stale attempt's never.
    assert all(kept[20:40]) and kept[-1] is False
    async with storage.read() as uow:
        got = await uow.tasks.get_many([t["id"] for t in rows])
    for t in rows:
        row = got[t["id"]]
        assert row["progress"] is not None and row["progress"]["value"] == 0.2
        assert row["heartbeat_due_at"] == now + timedelta(seconds=10)
    batches = getattr(fast, "progress_batches", None)
    if batches is not None:  # PostgreSQL: fewer statements than reports
        assert batches.statements < len(reports)


async def test_record_progress_many_answers_each_report_of_a_batch(storage: Storage) -> None:
    # More reports than one statement takes (256 on PostgreSQL), one of them not kept.
    rows = [task(i, status="running", attempt=1, heartbeat_seconds=10) for i in range(300)]
    waiting = task(300)
    async with storage.transaction() as uow:
        await uow.tasks.insert_many([*rows, waiting])
    now = T0 + timedelta(minutes=5)
    reports = [report(t, i / 1000, 1, attempt=1) for i, t in enumerate(rows)]
    reports.insert(150, report(waiting, 0.5, 1))
    kept = await storage.task_hot_paths.record_progress_many(reports, now)
    assert kept == [r.task_id != waiting["id"] for r in reports]
    assert await storage.task_hot_paths.record_progress_many([], now) == []
    async with storage.read() as uow:
        got = await uow.tasks.get_many([t["id"] for t in [*rows, waiting]])
    assert [got[t["id"]]["progress"]["value"] for t in rows] == [i / 1000 for i in range(300)]  # type: ignore[index]
    assert got[waiting["id"]]["progress"] is None
    assert got[rows[0]["id"]]["heartbeat_due_at"] == now + timedelta(seconds=10)


async def test_progress_of_reads_each_tasks_latest_report(storage: Storage) -> None:
    reporting, quiet = task(1, status="running", attempt=1), task(2, status="running", attempt=1)
    async with storage.transaction() as uow:
        await uow.tasks.insert_many([reporting, quiet])
    async with storage.transaction() as uow:
        assert await uow.tasks.record_progress(report(reporting, 0.25, 3), T0)
    unknown = task(3)["id"]
    async with storage.read() as uow:
        got = await uow.tasks.progress_of([reporting["id"], quiet["id"], unknown])
        assert await uow.tasks.progress_of([]) == {}
    assert set(got) == {reporting["id"], quiet["id"]}
    assert got[reporting["id"]] == {"value": 0.25, "at": (T0 + timedelta(seconds=3)).isoformat()}
    assert got[quiet["id"]] is None
