"""The completion estimate (``CompletionEstimator``) stays off the submission's path: one
shared query per kind, stale figures answered while they refresh, failures fall back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from orchestration_service.services.task_manager import CompletionEstimator
from tests.waiting import eventually


class FakeTasks:
    """The tasks port, with only what the estimator asks (``recent_durations``, set by the
    fixture)."""


class FakeUnitOfWork:
    tasks = FakeTasks


class FakeStorage:
    """The estimator's port: ``read()`` gives a unit of work with the fake tasks."""

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[FakeUnitOfWork]:
        yield FakeUnitOfWork()


class Durations:
    """Stands in for the tasks port's ``recent_durations``: counts calls, answers when let go."""

    def __init__(self, answers: list[list[float]]) -> None:
        self.answers = answers
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False

    async def __call__(self, *, tier: str | None = None, domain: str | None = None) -> list[float]:
        # Set on the class, it is called without the repository (not a method).
        self.calls += 1
        await self.gate.wait()
        if self.fail:
            raise ConnectionRefusedError(111, "database down")
        return self.answers[min(self.calls, len(self.answers)) - 1]


@pytest.fixture
def durations(monkeypatch: pytest.MonkeyPatch) -> Durations:
    d = Durations([[10.0, 20.0, 30.0], [100.0]])
    monkeypatch.setattr(FakeTasks, "recent_durations", d, raising=False)
    return d


def estimator(ttl: float = 60.0) -> CompletionEstimator:
    return CompletionEstimator(FakeStorage(), default_seconds=300, ttl_seconds=ttl)  # type: ignore[arg-type]


async def test_concurrent_first_callers_share_one_query(durations: Durations) -> None:
    est = estimator()
    durations.gate.clear()
    callers = [asyncio.create_task(est.seconds(tier="small")) for _ in range(20)]
    # The query is parked at the gate; the callers, started before it, have all joined it.
    await eventually(lambda: durations.calls == 1, what="the query to start")
    durations.gate.set()
    assert await asyncio.gather(*callers) == [20.0] * 20
    assert durations.calls == 1
    assert await est.seconds(tier="small") == 20.0 and durations.calls == 1  # cached


async def test_a_stale_figure_is_answered_while_one_refresh_runs(durations: Durations) -> None:
    est = estimator(ttl=0.0)
    assert await est.seconds() == 20.0
    durations.gate.clear()  # the refresh will hang until let go
    answers = await asyncio.wait_for(asyncio.gather(*(est.seconds() for _ in range(10))), 1)
    assert answers == [20.0] * 10  # nobody waited for the refresh
    assert durations.calls == 2  # one refresh for all of them
    durations.gate.set()

    async def refreshed() -> bool:
        return await est.seconds() == 100.0

    await eventually(refreshed, what="the refreshed figure")
    await est.close()


async def test_a_failed_query_falls_back_to_the_default(durations: Durations) -> None:
    est = estimator()
    durations.fail = True
    assert await est.seconds(domain="docs") == 300.0


async def test_close_stops_a_refresh_in_flight(durations: Durations) -> None:
    est = estimator()
    durations.gate.clear()
    waiting = asyncio.create_task(est.seconds())
    await eventually(lambda: durations.calls == 1, what="the refresh to start")
    await est.close()
    with pytest.raises(asyncio.CancelledError):
        await waiting
