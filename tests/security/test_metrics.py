"""/metrics: a scrape costs the database nothing (issue 16, defect 6), and with
``serve --workers N`` one scrape reports the whole server (defect 7)."""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from orchestration_service.repositories.gauges.sql import GAUGES_LOCK_KEY
from tests.conftest import Service, make_settings, start_service, truncate_all
from tests.integration.test_tasks_api import submit, wait_for_status
from tests.process import ServerProcess


async def test_a_scrape_does_not_query_the_database(service: Service) -> None:
    tid = (await submit(service))["task_id"]
    await wait_for_status(service, tid, "running")
    c = service.container
    assert c.gauges is not None
    await c.gauges.refresh()
    await c.gauges.stop()  # no background round from here on: only scrapes

    def unreachable(*_: Any, **__: Any) -> Any:
        raise ConnectionRefusedError("the database is gone")

    # The database "goes away": a scrape still answers, from memory. (The other background
    # loops may hit it meanwhile; they retry.)
    c.db.read = unreachable  # type: ignore[method-assign]
    c.db.transaction = unreachable  # type: ignore[method-assign]
    try:
        for _ in range(3):
            r = await service.client.get("/metrics")
            assert r.status_code == 200
            assert 'orch_tasks{state="running"} 1.0' in r.text
            assert 'orch_dependency_up{dependency="database"} 1.0' in r.text, "the scrape read the database"
    finally:
        del c.db.read, c.db.transaction  # the class's methods again


async def test_the_gauges_are_refreshed_in_the_background(clean_db: str) -> None:
    settings = make_settings(clean_db, observability={"metrics_refresh_seconds": 0.1})
    svc, lifespan = await start_service(settings)
    try:
        tid = (await submit(svc))["task_id"]
        await wait_for_status(svc, tid, "running")
        deadline = asyncio.get_running_loop().time() + 10
        while 'orch_tasks{state="running"} 1.0' not in (await svc.client.get("/metrics")).text:
            assert asyncio.get_running_loop().time() < deadline, "the gauges were never refreshed"
            await asyncio.sleep(0.05)
        assert svc.container.gauges is not None and svc.container.gauges.reads >= 1
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)


async def test_one_reader_at_a_time_across_replicas(pg_url: str) -> None:
    await truncate_all(pg_url)
    svc, lifespan = await start_service(make_settings(pg_url))
    other = create_async_engine(pg_url)
    try:
        gauges = svc.container.gauges
        assert gauges is not None
        async with other.connect() as conn, conn.begin():
            # Another replica is reading: this one skips its round.
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": GAUGES_LOCK_KEY})
            assert await gauges.refresh() is False
        assert await gauges.refresh() is True
    finally:
        await other.dispose()
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)


# -- several worker processes ------------------------------------------------------------------
ROUTE = "/api/v1/health/live"
_COUNT = re.compile(r"^orch_http_request_duration_seconds_count\{(?P<labels>[^}]*)\} (?P<n>[0-9.e+]+)$", re.M)


def served(text: str, route: str) -> float:
    return sum(float(m["n"]) for m in _COUNT.finditer(text) if f'route="{route}"' in m["labels"])


def metrics_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("orch-metrics-*"))


@pytest.fixture
def two_workers(pg_url: str, tmp_path: Path) -> Iterator[tuple[ServerProcess, set[Path]]]:
    env = {"ORCH_DATABASE_URL": pg_url, "ORCH_LOG_LEVEL": "WARNING"}
    before = metrics_dirs()
    with ServerProcess(env, log_path=tmp_path / "server.log") as server:
        server.start("--workers", "2", timeout=60)
        yield server, before


@pytest.mark.slow
def test_one_scrape_reports_every_worker(two_workers: tuple[ServerProcess, set[Path]]) -> None:
    server, before = two_workers
    assert metrics_dirs() - before, "serve made no metrics directory for its workers"

    def hit(_: int) -> int:
        # A connection per request, so that the kernel spreads them over both workers.
        with httpx.Client(base_url=server.url, timeout=10) as client:
            return client.get(ROUTE).status_code

    sent = 0
    seen: list[float] = []
    with ThreadPoolExecutor(8) as pool:
        for _ in range(3):
            assert set(pool.map(hit, range(40))) == {200}
            sent += 40
            for _ in range(4):
                with httpx.Client(base_url=server.url, timeout=10) as client:
                    seen.append(served(client.get("/metrics").text, ROUTE))
                assert seen[-1] == sent, (seen, sent)
    assert seen == sorted(seen), "the request count went backwards between scrapes"
    assert server.terminate() == 0
    assert not metrics_dirs() - before, "serve left its metrics directory behind"
