"""Routing measurements (slow; run with ``pytest -m slow -s`` to see the figures):
submission latency while the Agent Service takes 5 s, analyses in flight at the agent, and
submission-to-task.ready latency with the built-in analyzer."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator

import httpx
import pytest

from orchestration_service.events.memory import MemoryBus
from tests.conftest import make_settings, start_service
from tests.integration.fake_services import Agent, FakeService
from tests.waiting import eventually

pytestmark = pytest.mark.slow

N = 200
CONCURRENCY = 20


@pytest.fixture(scope="module")
def slow_agent() -> Iterator[FakeService]:
    fake = FakeService("slow-agent")
    fake.start()
    yield fake
    fake.stop()


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


async def _submit_all(
    client: httpx.AsyncClient, n: int = N, concurrency: int = CONCURRENCY, rate: float | None = None
) -> list[tuple[str, float, float]]:
    """(task_id, start, seconds) of ``n`` submissions, at most ``concurrency`` at a time,
    started ``rate`` per second (None: as fast as they go)."""
    gate = asyncio.Semaphore(concurrency)
    out: list[tuple[str, float, float]] = []

    async def one(i: int) -> None:
        if rate:
            await asyncio.sleep(i / rate)  # paced: submission i starts at i / rate seconds
        async with gate:
            start = time.monotonic()
            body = {"description": f"Write function number {i}", "project_id": f"p{i % 10}"}
            r = await client.post("/api/v1/tasks", json=body)
            out.append((r.json()["task_id"], start, time.monotonic() - start))
            assert r.status_code == 201

    await asyncio.gather(*(one(i) for i in range(n)))
    return out


def ms(values: list[float]) -> str:
    return (
        f"median={statistics.median(values) * 1000:.1f}ms p95={p95(values) * 1000:.1f}ms "
        f"max={max(values) * 1000:.1f}ms"
    )


async def test_submission_stays_fast_while_the_agent_takes_5s(clean_db: str, slow_agent: FakeService) -> None:
    slow_agent.reset()
    Agent().install(slow_agent, delay=5.0)
    routing = {"agent_service_url": slow_agent.url, "agent_timeout_seconds": 30, "max_concurrent_analyses": 8}
    svc, lifespan = await start_service(make_settings(clean_db, routing=routing))
    try:
        took = [s for _, _, s in await _submit_all(svc.client)]
        await eventually(  # analyses under way for a while: a first one ended, the next began
            lambda: len(slow_agent.calls_to("/analyze")) > 8, timeout=30, what="a second round of analyses"
        )
        backend = clean_db.split(":")[0]
        print(
            f"\n[{backend}] submission with a 5 s agent, n={N} concurrency={CONCURRENCY}: {ms(took)}; "
            f"agent max in flight={slow_agent.max_in_flight}"
        )
        # Behaviour, not a speed target (that is printed): had routing been inline, every
        # submission would have waited for the 5 s agent.
        assert max(took) < 5.0, "a submission waited for the agent"
        assert slow_agent.max_in_flight == 8
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)


@pytest.mark.parametrize("rate", [20.0, 50.0, None], ids=["20-per-s", "50-per-s", "burst"])
async def test_builtin_submission_to_ready_latency(clean_db: str, rate: float | None) -> None:
    settings = make_settings(clean_db, task_management={"max_concurrent_per_project": 100})
    svc, lifespan = await start_service(settings)
    bus = svc.container.bus
    assert isinstance(bus, MemoryBus)
    seen: dict[str, float] = {}
    all_seen = asyncio.Event()
    listener = bus.listen()

    async def watch() -> None:
        while True:
            msg = await listener.get()
            if msg.routing_key.startswith("task.ready."):
                seen.setdefault(str(msg.envelope["subject"]), time.monotonic())
                if len(seen) == N:
                    all_seen.set()

    watcher = asyncio.create_task(watch())
    try:
        results = await _submit_all(svc.client, rate=rate)
        await asyncio.wait_for(all_seen.wait(), 60)
        latency = [seen[tid] - start for tid, start, _ in results]
        backend = clean_db.split(":")[0]
        load = f"{rate:g}/s" if rate else f"burst, concurrency {CONCURRENCY}"
        print(f"\n[{backend}] builtin submission -> task.ready, n={N} ({load}): {ms(latency)}")
    finally:
        watcher.cancel()
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)
