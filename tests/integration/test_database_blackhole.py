"""Issue 21: a half-open database (connections open, nothing passing) does not take the
service down, and the service recovers by itself once the network passes again.

Every connection of the service, pooled or its own, goes through a fault proxy
(tests/faultproxy.py) that blackholes PostgreSQL and drops the bytes: a connection that
sent anything meanwhile never answers again, and this machine's kernel acknowledges every
byte the proxy reads, so TCP itself notices nothing. Only the service's timeouts can. Before
the fix, readiness and submissions hung for as long as the blackhole lasted and after it;
the pools kept handing out their dead connections, so nothing recovered without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx
from sqlalchemy.engine import make_url

from orchestration_service.services.event_log import LogEntry, LogFilter
from tests.conftest import Service, make_settings, start_service, truncate_all
from tests.faultproxy import FaultProxy
from tests.integration.test_event_lifecycle import Harness, cloud_event, output_event
from tests.waiting import eventually

# Short timeouts, so that the test takes seconds; production defaults are in config/sections.py.
FAST_STORAGE = {
    "connect_timeout_seconds": 1.0,
    "pool_timeout_seconds": 1.0,
    "pool_statement_timeout_seconds": 1.0,
    "ping_timeout_seconds": 1.0,
}
FAST_EVENTS = {"relay_leader_check_seconds": 0.5, "relay_leader_timeout_seconds": 1.0}
BLACKHOLE_SECONDS = 10.0
LIVE_BOUND = 1.0  # /health/live during the fault
READY_BOUND = 3.0  # /health/ready says 503 within this
SUBMIT_BOUND = 5.0  # a submission is refused (503) within this, not left hanging
RECOVERY_BOUND = 10.0  # after the fault: ready, a submission accepted, a task completed


async def _get(svc: Service, path: str, bound: float) -> httpx.Response:
    async with asyncio.timeout(bound):
        return await svc.client.get(path)


async def _submit(svc: Service, bound: float, **body: Any) -> httpx.Response:
    payload = {"description": "Write a fibonacci function", "project_id": "proj-1", **body}
    async with asyncio.timeout(bound):
        return await svc.client.post("/api/v1/tasks", json=payload)


async def _accepted(svc: Service, description: str) -> str | None:
    """The new task's id when a submission is accepted within 2 s, else None."""
    with contextlib.suppress(TimeoutError):
        r = await _submit(svc, 2, description=description)
        if r.status_code == 201:
            return str(r.json()["task_id"])
    return None


async def _load(svc: Service, stop: asyncio.Event) -> None:
    """Submissions and status reads all along, so that connections are mid-statement when
    the fault begins (as under real traffic) and die with it."""
    n = 0
    while not stop.is_set():
        n += 1
        with contextlib.suppress(Exception):
            r = await _submit(svc, 30, description=f"load {n}", project_id="load")
            if r.status_code == 201:
                await _get(svc, f"/api/v1/tasks/{r.json()['task_id']}", 30)
        await asyncio.sleep(0.02)


async def test_a_blackholed_database_answers_503_quickly_and_the_service_recovers_by_itself(
    pg_url: str,
) -> None:
    await truncate_all(pg_url)
    url = make_url(pg_url)
    proxy = await FaultProxy(url.host or "127.0.0.1", url.port or 5432).start()
    proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
    settings = make_settings(proxied, storage=FAST_STORAGE, events=FAST_EVENTS)
    svc, lifespan = await start_service(settings)
    h = Harness(svc)
    stop = asyncio.Event()
    loaders: list[asyncio.Task[None]] = []

    async def ready() -> bool:
        with contextlib.suppress(TimeoutError):
            return (await _get(svc, "/api/v1/health/ready", 2)).status_code == 200
        return False

    try:
        await eventually(ready, timeout=10, what="ready at start")  # the consumer attaches
        loaders = [asyncio.create_task(_load(svc, stop)) for _ in range(4)]
        await eventually(lambda: len(h.bus.published) > 4, what="load flowing")

        proxy.blackhole(drop=True)
        fault = time.monotonic()
        # Liveness: answered at once, all through the fault (nothing blocks the loop).
        slowest_live = 0.0
        ready_503_after: float | None = None
        submit_503_after: float | None = None
        while time.monotonic() - fault < BLACKHOLE_SECONDS:
            t = time.monotonic()
            r = await _get(svc, "/api/v1/health/live", LIVE_BOUND)
            assert r.status_code == 200
            slowest_live = max(slowest_live, time.monotonic() - t)
            if ready_503_after is None:
                r = await _get(svc, "/api/v1/health/ready", READY_BOUND)
                assert r.status_code == 503, r.text
                ready_503_after = time.monotonic() - fault
            if submit_503_after is None:
                t = time.monotonic()
                r = await _submit(svc, SUBMIT_BOUND, description="during the fault")
                assert r.status_code == 503, r.text
                assert r.headers["content-type"] == "application/problem+json"
                assert r.json()["type"].endswith("service-unavailable")
                assert r.headers["retry-after"]
                submit_503_after = time.monotonic() - t
            await asyncio.sleep(0.2)

        proxy.heal()
        healed = time.monotonic()
        await eventually(ready, timeout=RECOVERY_BOUND, interval=0.1, what="ready again")
        to_ready = time.monotonic() - healed

        task_id = await eventually(
            lambda: _accepted(svc, "Write a fibonacci function after the fault"),
            timeout=RECOVERY_BOUND,
            interval=0.1,
            what="a submission",
        )
        to_submit = time.monotonic() - healed
        stop.set()

        # The task completes: dispatched (task.ready published by the relay), then the
        # worker's and QA's events, handled by the consumer.
        remaining = RECOVERY_BOUND - (time.monotonic() - healed)
        await eventually(
            lambda: any(
                m.routing_key.startswith("task.ready.") and m.envelope.get("subject") == task_id
                for m in list(h.bus.published)
            ),
            timeout=max(remaining, 0.1),
            what="the task dispatched",
        )
        await h.send(output_event(task_id))
        await h.send(
            cloud_event("task.validated", {"task_id": task_id, "confidence": 0.9}, source="/qa-service"),
            "task.validated",
            "qa.events",
        )

        async def completed() -> bool:
            with contextlib.suppress(TimeoutError):
                r = await _get(svc, f"/api/v1/tasks/{task_id}", 2)
                return r.status_code == 200 and r.json()["status"] == "completed"
            return False

        remaining = RECOVERY_BOUND - (time.monotonic() - healed)
        await eventually(completed, timeout=max(remaining, 0.1), interval=0.1, what="the task completed")
        to_complete = time.monotonic() - healed
        assert not h.bus.dead_letters
        print(
            f"during the fault: live <= {slowest_live:.2f}s, ready 503 after {ready_503_after:.2f}s, "
            f"submission 503 in {submit_503_after:.2f}s; after it: ready in {to_ready:.2f}s, "
            f"a submission accepted in {to_submit:.2f}s, a task completed in {to_complete:.2f}s"
        )
    finally:
        stop.set()
        proxy.heal()
        for task in loaders:
            task.cancel()
        await asyncio.gather(*loaders, return_exceptions=True)
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)
        await proxy.close()


async def test_the_event_feed_resumes_after_a_blackhole(pg_url: str) -> None:
    """Found by the fault-injection suite: the feed's fan-out read on its listening connection
    without a client-side bound, so a blackhole left it waiting for good: every stream of the
    replica stalled (no gap in what it sent, but nothing more) until a restart."""
    await truncate_all(pg_url)
    url = make_url(pg_url)
    proxy = await FaultProxy(url.host or "127.0.0.1", url.port or 5432).start()
    proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
    svc, lifespan = await start_service(make_settings(proxied, storage=FAST_STORAGE, events=FAST_EVENTS))
    seen: list[LogEntry] = []

    async def follow() -> None:
        async for batch in svc.container.event_log.follow(None, LogFilter(), heartbeat=0.5):
            seen.extend(batch or [])

    follower = asyncio.create_task(follow())
    try:
        first = await _submit(svc, 5, description="before the fault")
        assert first.status_code == 201, first.text
        await eventually(lambda: any(e.subject == first.json()["task_id"] for e in seen), what="fed")

        proxy.blackhole(drop=True)
        await asyncio.sleep(3.0)  # the fault itself: longer than the feed's read bound (2 s)
        proxy.heal()

        after = await eventually(
            lambda: _accepted(svc, "after the fault"),
            timeout=RECOVERY_BOUND,
            interval=0.1,
            what="a submission",
        )
        await eventually(
            lambda: any(e.subject == after for e in seen), timeout=RECOVERY_BOUND, what="the feed resumed"
        )
        seqs = [e.seq for e in seen]
        assert seqs == sorted(set(seqs)), "in order, each once"
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        proxy.heal()
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)
        await proxy.close()
