"""ReviewRepository on both backends."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from orchestration_service.domain.ids import uuid7
from orchestration_service.repositories.ports import Storage
from orchestration_service.repositories.reviews import ReviewFilter, ReviewRecord
from orchestration_service.repositories.tasks import TaskRecord
from tests.integration.repositories.tasks_data import T0, task


def _review(t: TaskRecord, minutes: int = 0, **values: object) -> ReviewRecord:
    base: dict[str, object] = {
        "id": uuid7(),
        "task_id": t["id"],
        "project_id": t["project_id"],
        "status": "open",
        "attempt": 1,
        "qa_review_id": None,
        "qa_result_id": "qa-1",
        "reason": "low confidence",
        "request": {"checklist": ["tests pass"], "artifacts": [{"id": "a1"}]},
        "requested_at": T0 + timedelta(minutes=minutes),
    }
    base.update(values)
    return ReviewRecord(**base)  # type: ignore[arg-type]


async def _tasks(storage: Storage, *rows: TaskRecord) -> None:
    async with storage.transaction() as uow:
        await uow.tasks.insert_many(list(rows))


async def test_a_review_reads_back_as_written_and_is_the_tasks_open_one(storage: Storage) -> None:
    t = task(1, status="awaiting_review")
    await _tasks(storage, t)
    review = _review(t, qa_review_id="rev-7")
    async with storage.transaction() as uow:
        await uow.reviews.insert(review)
    async with storage.read() as uow:
        assert await uow.reviews.get(review.id) == review
        assert await uow.reviews.open_for_task(t["id"]) == review
        assert await uow.reviews.get(uuid.uuid4()) is None
        assert await uow.reviews.open_for_task(uuid.uuid4()) is None


async def test_a_review_is_decided_once(storage: Storage) -> None:
    t = task(1, status="awaiting_review")
    await _tasks(storage, t)
    review = _review(t)
    async with storage.transaction() as uow:
        await uow.reviews.insert(review)
    at = T0 + timedelta(hours=1)
    async with storage.transaction() as uow:
        first = await uow.reviews.decide(
            review.id, decision="approved", reviewer="alice", text="fine", at=at, via="api"
        )
        second = await uow.reviews.decide(
            review.id, decision="rejected", reviewer="bob", text="no", at=at, via="api"
        )
    assert (first, second) == (True, False)
    async with storage.read() as uow:
        got = await uow.reviews.get(review.id)
        assert await uow.reviews.open_for_task(t["id"]) is None
    assert got is not None
    assert (got.status, got.decision, got.reviewer, got.decision_text, got.decided_at, got.decided_via) == (
        "decided",
        "approved",
        "alice",
        "fine",
        at,
        "api",
    )


async def test_close_open_closes_only_open_reviews_of_the_tasks_named(storage: Storage) -> None:
    a, b = task(1, status="awaiting_review"), task(2, status="awaiting_review")
    await _tasks(storage, a, b)
    old = _review(a, status="decided", decision="changes_requested")
    open_a, open_b = _review(a, 1), _review(b, 2)
    async with storage.transaction() as uow:
        for r in (old, open_a, open_b):
            await uow.reviews.insert(r)
    async with storage.transaction() as uow:
        assert await uow.reviews.close_open([a["id"]], reason="cancelled", at=T0) == 1
        assert await uow.reviews.close_open([a["id"]], reason="again", at=T0) == 0
        assert await uow.reviews.close_open([], reason="none", at=T0) == 0
    async with storage.read() as uow:
        closed, kept, other = [await uow.reviews.get(r.id) for r in (open_a, old, open_b)]
    assert closed is not None and (closed.status, closed.closed_reason) == ("closed", "cancelled")
    assert kept == old
    assert other == open_b


async def test_one_open_review_per_task_is_enforced_by_the_store(storage: Storage) -> None:
    t = task(1, status="awaiting_review")
    await _tasks(storage, t)
    async with storage.transaction() as uow:
        await uow.reviews.insert(_review(t))
    with pytest.raises(Exception, match=r"(?i)unique"):
        async with storage.transaction() as uow:
            await uow.reviews.insert(_review(t, 1))


async def test_find_pages_oldest_first_with_filters_and_keyset(storage: Storage) -> None:
    tasks = [task(i, project_id="p1" if i % 2 else "p2", status="awaiting_review") for i in range(6)]
    await _tasks(storage, *tasks)
    # Inserted out of order: the order is the request's time, not the insert's.
    reviews = [_review(t, minutes=10 - i, status="open" if i < 4 else "decided") for i, t in enumerate(tasks)]
    async with storage.transaction() as uow:
        for r in reviews:
            await uow.reviews.insert(r)
    by_time = sorted(reviews, key=lambda r: r.requested_at)
    async with storage.read() as uow:
        everything = await uow.reviews.find(ReviewFilter(), limit=10)
        assert [r.id for r in everything] == [r.id for r in by_time]
        first = await uow.reviews.find(ReviewFilter(status="open"), limit=2)
        rest = await uow.reviews.find(
            ReviewFilter(status="open"), limit=10, after=(first[-1].requested_at, first[-1].id)
        )
        assert await uow.reviews.count(ReviewFilter(status="open")) == 4
        p1 = await uow.reviews.find(ReviewFilter(project_ids=["p1"]), limit=10)
        assert await uow.reviews.count(ReviewFilter(project_ids=["p1"], status="decided")) == 1
        assert await uow.reviews.count(ReviewFilter(), cap=2) == 3  # counting stops past the cap
        offset = await uow.reviews.find(ReviewFilter(), limit=2, offset=4)
    open_ids = [r.id for r in by_time if r.status == "open"]
    assert [r.id for r in first] + [r.id for r in rest] == open_ids
    assert {r.project_id for r in p1} == {"p1"} and len(p1) == 3
    assert [r.id for r in offset] == [r.id for r in by_time[4:]]
