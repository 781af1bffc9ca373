"""``db.batching.Batcher``: natural batching with each caller's own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from orchestration_service.db.batching import Batcher
from tests.waiting import eventually


class Recorder:
    """A ``run`` that records its batches and refuses the item ``bad``."""

    def __init__(self, bad: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.bad = bad
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        await self.release.wait()
        if self.bad in items:
            raise ValueError(f"refused {self.bad}")
        return [i * 10 for i in items]


async def test_calls_go_at_once_then_wait_together() -> None:
    run = Recorder()
    batcher = Batcher(run, writers=2, max_batch=5)
    results = await asyncio.gather(*(batcher(i) for i in range(12)))
    assert results == [i * 10 for i in range(12)]
    # Two writers take one call each; the rest leave in batches of at most five.
    assert run.batches == [[0], [1], [2, 3, 4, 5, 6], [7, 8, 9, 10, 11]]
    assert batcher.statements == 4


async def test_a_refused_batch_is_retried_one_by_one() -> None:
    run = Recorder(bad=4)
    batcher = Batcher(run, writers=1)
    results = await asyncio.gather(*(batcher(i) for i in range(6)), return_exceptions=True)
    assert [r for r in results if not isinstance(r, BaseException)] == [0, 10, 20, 30, 50]
    assert isinstance(results[4], ValueError)
    assert run.batches[:2] == [[0], [1, 2, 3, 4, 5]]
    assert sorted(map(tuple, run.batches[2:])) == [(1,), (2,), (3,), (4,), (5,)]


async def test_twins_never_share_a_batch() -> None:
    run = Recorder()
    batcher = Batcher(run, writers=1, exclusive=lambda i: i % 2 or None)  # odd items are twins
    await asyncio.gather(*(batcher(i) for i in range(6)))
    assert all(sum(i % 2 for i in batch) <= 1 for batch in run.batches)
    assert sorted(i for batch in run.batches for i in batch) == list(range(6))


async def test_a_caller_that_goes_away_does_not_stop_the_others() -> None:
    run = Recorder()
    batcher = Batcher(run, writers=1)
    run.release.clear()
    first = asyncio.ensure_future(batcher(1))
    waiting = [asyncio.ensure_future(batcher(i)) for i in (2, 3)]
    # The first batch runs (held); the calls made before it started wait in the queue.
    await eventually(lambda: run.batches == [[1]], what="the first batch")
    waiting[0].cancel()
    run.release.set()
    assert await first == 10
    assert await waiting[1] == 30
    with pytest.raises(asyncio.CancelledError):
        await waiting[0]
    assert run.batches == [[1], [2, 3]]
