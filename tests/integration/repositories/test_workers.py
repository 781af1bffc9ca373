"""WorkerRepository on both backends: workers seen, their attempts and counts, scoped
views, queue counts per tier and the failures list."""

from __future__ import annotations

from datetime import timedelta

from orchestration_service.repositories.ports import Storage
from orchestration_service.repositories.workers import AttemptSeen, FailureFilter
from tests.integration.repositories.tasks_data import T0, task


async def test_a_worker_is_inserted_once_and_its_last_seen_only_moves_forward(storage: Storage) -> None:
    async with storage.transaction() as uow:
        await uow.workers.touch("w1", T0)
        await uow.workers.touch("w1", T0 + timedelta(seconds=30))
        await uow.workers.touch("w1", T0 + timedelta(seconds=10))  # late, out of order
    async with storage.read() as uow:
        page = await uow.workers.page(None, limit=10)
    assert page.total == 1
    (w,) = page.rows
    assert (w.worker_id, w.first_seen, w.last_seen) == ("w1", T0, T0 + timedelta(seconds=30))
    assert (w.in_flight, w.completed, w.failed, w.rejected, w.tiers, w.models) == (0, 0, 0, 0, (), ())


async def test_counts_tiers_models_and_in_flight_come_from_the_attempts(storage: Storage) -> None:
    running = task(1, status="running", tier="small", attempt=1)
    validating = task(2, status="validating", tier="large", attempt=1)
    retried = task(3, status="running", tier="small", attempt=2)  # attempt 1 was rejected
    done = task(4, status="completed", tier="small", attempt=1)
    timed_out = task(5, status="failed", tier="small", attempt=1)
    async with storage.transaction() as uow:
        await uow.tasks.insert_many([running, validating, retried, done, timed_out])
        for t, model in ((running, "m1"), (validating, "m2"), (done, "m1"), (timed_out, None)):
            await uow.workers.record_attempt(
                task_id=t["id"],
                attempt=1,
                worker_id="w1",
                project_id="p1",
                tier=t["tier"],
                model=model,
                at=T0,
            )
        await uow.workers.record_attempt(
            task_id=retried["id"], attempt=1, worker_id="w1", project_id="p1", tier="small", model="m1", at=T0
        )
        assert await uow.workers.set_outcome(retried["id"], 1, "rejected", T0)
        assert await uow.workers.set_outcome(done["id"], 1, "completed", T0)
        assert not await uow.workers.set_outcome(done["id"], 1, "rejected", T0)  # already closed
        assert not await uow.workers.set_outcome(done["id"], 2, "completed", T0)  # no such attempt
        await uow.workers.touch("w1", T0)
    async with storage.read() as uow:
        (w,) = (await uow.workers.page(None, limit=10)).rows
    # running and validating are in flight; the timed-out one has no outcome but is final.
    assert (w.in_flight, w.completed, w.rejected, w.failed) == (2, 1, 1, 0)
    assert w.tiers == ("large", "small") and w.models == ("m1", "m2")


async def test_a_failed_report_keeps_its_outcome_and_a_later_worker_takes_over(storage: Storage) -> None:
    t = task(1, status="running", tier="small", attempt=1)
    async with storage.transaction() as uow:
        await uow.tasks.insert_many([t])
        args = {"task_id": t["id"], "attempt": 1, "project_id": "p1", "tier": "small", "model": None}
        await uow.workers.record_attempt(worker_id="w1", at=T0, outcome="failed", **args)
        await uow.workers.record_attempt(worker_id="w2", at=T0 + timedelta(seconds=1), **args)
        await uow.workers.touch("w2", T0)
    async with storage.read() as uow:
        (w,) = (await uow.workers.page(None, limit=10)).rows
    assert (w.worker_id, w.failed, w.in_flight) == ("w2", 1, 0)


async def test_a_scoped_view_sees_only_its_projects_rows(storage: Storage) -> None:
    mine = task(1, project_id="mine", status="completed", tier="small", attempt=1)
    theirs = task(2, project_id="theirs", status="completed", tier="large", attempt=1)
    only_theirs = task(3, project_id="theirs", status="running", tier="large", attempt=1)
    async with storage.transaction() as uow:
        await uow.tasks.insert_many([mine, theirs, only_theirs])
        for t, worker, at in (
            (mine, "shared", T0),
            (theirs, "shared", T0 + timedelta(hours=1)),
            (only_theirs, "secret", T0),
        ):
            await uow.workers.record_attempt(
                task_id=t["id"],
                attempt=1,
                worker_id=worker,
                project_id=t["project_id"],
                tier=t["tier"],
                model=f"model-{t['project_id']}",
                at=at,
                outcome="completed",
            )
            await uow.workers.touch(worker, at)
    async with storage.read() as uow:
        scoped = await uow.workers.page(["mine"], limit=10)
        everything = await uow.workers.page(None, limit=10)
        nothing = await uow.workers.page(["nobody"], limit=10)
    assert scoped.total == 1
    (w,) = scoped.rows
    assert (w.worker_id, w.last_seen, w.tiers, w.models, w.completed) == (
        "shared",
        T0,
        ("small",),
        ("model-mine",),
        1,
    )
    assert everything.total == 2
    assert {x.worker_id: x.completed for x in everything.rows} == {"shared": 2, "secret": 1}
    assert nothing.total == 0 and not nothing.rows


async def test_pages_are_ordered_by_last_seen(storage: Storage) -> None:
    async with storage.transaction() as uow:
        for i in range(5):
            await uow.workers.touch(f"w{i}", T0 + timedelta(seconds=i))
    async with storage.read() as uow:
        first = await uow.workers.page(None, limit=2)
        second = await uow.workers.page(None, limit=2, offset=2)
    assert [w.worker_id for w in first.rows] == ["w4", "w3"]
    assert [w.worker_id for w in second.rows] == ["w2", "w1"]
    assert first.total == 5


async def test_tier_counts_per_state_with_the_oldest(storage: Storage) -> None:
    rows = [
        task(1, tier="small"),
        task(5, tier="small"),
        task(2, tier=None),
        task(3, tier="small", status="running"),
        task(4, tier="large", status="validating"),
        task(6, tier="large", status="completed"),
        task(7, project_id="other", tier="small"),
    ]
    async with storage.transaction() as uow:
        await uow.tasks.insert_many(rows)
    async with storage.read() as uow:
        counts = {
            (c.tier, c.status): (c.count, c.oldest_created_at) for c in await uow.workers.tier_counts(None)
        }
        scoped = {(c.tier, c.status): c.count for c in await uow.workers.tier_counts(["p1"])}
    assert counts == {
        ("small", "pending"): (3, T0 + timedelta(seconds=1)),
        (None, "pending"): (1, T0 + timedelta(seconds=2)),
        ("small", "running"): (1, T0 + timedelta(seconds=3)),
        ("large", "validating"): (1, T0 + timedelta(seconds=4)),
    }
    assert scoped[("small", "pending")] == 2


async def test_failures_newest_first_filtered_and_paged(storage: Storage) -> None:
    def failed(n: int, reason: str, **kw: object) -> dict[str, object]:
        return task(
            n,
            status="failed",
            completed_at=T0 + timedelta(minutes=n),
            error={"reason": reason, "detail": "x"},
            **kw,
        )

    rows = [
        failed(1, "timeout", tier="small"),
        failed(2, "rejected: bad code", tier="large"),
        failed(3, "worker failed", tier="small", project_id="p2"),
        failed(4, "rejected: 100%_sure", tier="small"),
        task(5, status="completed", tier="small"),
    ]
    async with storage.transaction() as uow:
        await uow.tasks.insert_many(rows)  # type: ignore[arg-type]
    async with storage.read() as uow:
        everything = await uow.workers.failures(FailureFilter(), limit=10, cap=100)
        rejected = await uow.workers.failures(FailureFilter(reason="rejected"), limit=10, cap=100)
        wildcard = await uow.workers.failures(FailureFilter(reason="rejected: 100%_"), limit=10, cap=100)
        small_p1 = await uow.workers.failures(
            FailureFilter(project_ids=["p1"], tier="small"), limit=10, cap=100
        )
        first = await uow.workers.failures(FailureFilter(), limit=2, cap=100)
        last = first.rows[-1]
        rest = await uow.workers.failures(
            FailureFilter(), limit=2, after=(last["completed_at"], last["id"]), cap=100
        )
        capped = await uow.workers.failures(FailureFilter(), limit=1, cap=2)
    assert [r["description"] for r in everything.rows] == ["task 4", "task 3", "task 2", "task 1"]
    assert [r["description"] for r in rejected.rows] == ["task 4", "task 2"]
    assert [r["description"] for r in wildcard.rows] == ["task 4"]
    assert [r["description"] for r in small_p1.rows] == ["task 4", "task 1"]
    assert first.has_more and [r["description"] for r in rest.rows] == ["task 2", "task 1"]
    assert not rest.has_more
    assert (capped.total, capped.total_capped) == (2, True)


async def test_attempts_and_workers_are_written_many_at_once(storage: Storage) -> None:
    """The batch writes (heartbeats): the same upserts as one at a time, in one statement each."""
    a = task(1, status="running", tier="small", attempt=1)
    b = task(2, status="running", tier="large", attempt=1)
    async with storage.transaction() as uow:
        await uow.tasks.insert_many([a, b])
        await uow.workers.record_attempt(
            task_id=b["id"], attempt=1, worker_id="w1", project_id="p1", tier=None, model="m1", at=T0
        )
        assert await uow.workers.set_outcome(b["id"], 1, "completed", T0)
        await uow.workers.touch("w1", T0 + timedelta(seconds=30))
        rows = [AttemptSeen(a["id"], 1, "w1", "p1", "small"), AttemptSeen(b["id"], 1, "w2", "p1", "large")]
        await uow.workers.record_attempts(rows, T0 + timedelta(seconds=10))
        await uow.workers.touch_many(["w2", "w1"], T0 + timedelta(seconds=10))
    async with storage.read() as uow:
        page = await uow.workers.page(None, limit=10)
    got = {w.worker_id: (w.last_seen, w.in_flight, w.completed, w.tiers, w.models) for w in page.rows}
    assert got == {
        # w1's last_seen does not move back; b's attempt went over to w2 with its outcome and model.
        "w1": (T0 + timedelta(seconds=30), 1, 0, ("small",), ()),
        "w2": (T0 + timedelta(seconds=10), 0, 1, ("large",), ("m1",)),
    }
