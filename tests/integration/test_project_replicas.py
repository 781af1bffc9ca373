"""Per-project limits and timeouts with two replicas on PostgreSQL and RabbitMQ: one project
at a limit of 2, another at 5, a third timing out after its own one second."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import AMQP_URL
from tests.integration.test_replicas import amqp, envelope, pg, prefix  # noqa: F401 - fixtures
from tests.process import ServerProcess
from tests.waiting import eventually

pytestmark = pytest.mark.slow

LIMITS = {"two": 2, "five": 5}
CONSTITUTION = "# Standards\n\nType hints everywhere."
PER_PROJECT = 12


async def peaks(url: str) -> dict[str, int]:
    """Replays each project's history: the most tasks in flight at once."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.text(
                        "SELECT t.project_id, h.from_status, h.to_status, h.created_at, h.id "
                        "FROM task_history h JOIN tasks t ON t.id = h.task_id "
                        "WHERE h.from_status IS DISTINCT FROM h.to_status"
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    events: list[tuple[datetime, int, str, int]] = []
    for project, frm, to, at, hid in rows:
        delta = (to in ("running", "validating")) - (frm in ("running", "validating"))
        events.append((at, hid, project, delta))
    now: dict[str, int] = {}
    peak: dict[str, int] = {}
    for _at, _hid, project, delta in sorted(events):
        now[project] = now.get(project, 0) + delta
        peak[project] = max(peak.get(project, 0), now[project])
    return peak


async def test_each_project_keeps_its_own_limit_and_timeout_across_two_replicas(
    pg: str,  # noqa: F811
    prefix: str,  # noqa: F811
    amqp: aio_pika.abc.AbstractChannel,  # noqa: F811
    tmp_path: Path,
) -> None:
    env = {
        "ORCH_DATABASE_URL": pg,
        "ORCH_BROKER_URL": AMQP_URL,
        "ORCH_EVENTS__NAME_PREFIX": prefix,
        "ORCH_MAX_CONCURRENT_PER_PROJECT": "1",  # the configured limit: each project has its own
        "ORCH_TASK_MANAGEMENT__SWEEP_INTERVAL_SECONDS": "0.3",
    }
    a = ServerProcess(env, log_path=tmp_path / "a.log").start()
    b = ServerProcess(env, log_path=tmp_path / "b.log").start()
    try:
        async with httpx.AsyncClient(base_url=a.url, timeout=10) as c:
            for project, limit in LIMITS.items():
                body = {"project_id": project, "settings": {"max_concurrent": limit}}
                if project == "two":
                    body["constitution"] = CONSTITUTION
                r = await c.post("/api/v1/projects", json=body)
                assert r.status_code == 201, r.text
            r = await c.post(
                "/api/v1/projects",
                json={
                    "project_id": "slow",
                    "settings": {"timeout_default_seconds": 1, "max_attempts_default": 1},
                },
            )
            assert r.status_code == 201, r.text
        ready = await amqp.declare_queue(exclusive=True, auto_delete=True)
        await ready.bind(prefix + "task.events", routing_key="task.ready.*")
        task_exchange = await amqp.get_exchange(prefix + "task.events")
        qa_exchange = await amqp.get_exchange(prefix + "qa.events")
        constitutions: dict[str, list[Any]] = {}

        async def worker() -> None:
            """Answers every task.ready but the slow project's, after a short random delay."""
            async with ready.iterator() as it:
                async for msg in it:
                    async with msg.process():
                        data = orjson.loads(msg.body)["data"]
                        constitutions.setdefault(data["project_id"], []).append(data["constitution"])
                        if data["project_id"] == "slow":
                            continue
                        await asyncio.sleep(secrets.randbelow(80) / 1000)
                        tid = data["task_id"]
                        art = {"id": f"art-{tid}-{data['attempt']}", "type": "code", "path": "x.py"}
                        out = envelope("task.output.created", {"task_id": tid, "artifacts": [art]}, "/worker")
                        await task_exchange.publish(
                            aio_pika.Message(orjson.dumps(out)), routing_key="task.output.created"
                        )
                        ok = envelope("task.validated", {"task_id": tid, "confidence": 0.9}, "/qa")
                        await qa_exchange.publish(
                            aio_pika.Message(orjson.dumps(ok)), routing_key="task.validated"
                        )

        worker_task = asyncio.create_task(worker())

        async def submit(url: str, project: str, i: int) -> None:
            async with httpx.AsyncClient(base_url=url, timeout=10) as c:
                r = await c.post("/api/v1/tasks", json={"description": f"race {i}", "project_id": project})
                assert r.status_code == 201, r.text

        await asyncio.gather(
            *(submit((a if i % 2 else b).url, p, i) for p in LIMITS for i in range(PER_PROJECT)),
            submit(b.url, "slow", 0),
        )

        async def done() -> bool:
            async with httpx.AsyncClient(base_url=a.url, timeout=10) as c:
                for project in LIMITS:
                    doc = (await c.get(f"/api/v1/projects/{project}")).json()
                    if doc["status"]["counts"]["completed"] != PER_PROJECT:
                        return False
                slow = (await c.get("/api/v1/projects/slow")).json()
                return bool(slow["status"]["counts"]["failed"] == 1)

        await eventually(done, timeout=60, interval=0.2, what="every task finished")
        worker_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker_task
        async with httpx.AsyncClient(base_url=a.url, timeout=10) as c:
            failed = (await c.get("/api/v1/tasks", params={"project_id": "slow"})).json()["items"][0]
            assert failed["timeout_seconds"] == 1 and failed["max_attempts"] == 1
    finally:
        a.terminate()
        b.terminate()
    peak = await peaks(pg)
    for project, limit in LIMITS.items():
        assert peak[project] <= limit, f"{peak[project]} of {project} in flight at once (limit {limit})"
    assert peak["five"] > 2, "the limit of 5 let more than 2 run at once (the limits are per project)"
    # Through RabbitMQ, from either replica, each task.ready carries its project's constitution.
    sha = hashlib.sha256(CONSTITUTION.encode()).hexdigest()
    assert len(constitutions["two"]) >= PER_PROJECT
    assert all(
        c == {"source": "project", "version": 1, "sha256": sha, "text": CONSTITUTION}
        for c in constitutions["two"]
    )
    assert set(map(str, constitutions["five"])) == {"None"}
