"""Real processes on PostgreSQL and RabbitMQ: a crash between commit and publish loses
nothing, and two replicas competing for one project never over-dispatch."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import AMQP_URL, missing_service, truncate_all
from tests.integration.test_rabbitmq_bus import delete_topology, tap
from tests.process import ServerProcess, free_port
from tests.waiting import eventually

pytestmark = pytest.mark.slow


@pytest.fixture
async def pg(pg_url: str) -> str:
    await truncate_all(pg_url)
    return pg_url


@pytest.fixture
async def amqp() -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    try:
        conn = await aio_pika.connect(AMQP_URL, timeout=5)
    except Exception as exc:
        missing_service("RabbitMQ", exc)
        raise
    try:
        yield await conn.channel()
    finally:
        await conn.close()


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    p = f"r{secrets.token_hex(4)}."
    yield p
    await delete_topology(p)


def envelope(name: str, data: dict[str, Any], source: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "type": f"dats.{name}",
        "source": source,
        "id": str(uuid.uuid4()),
        "datacontenttype": "application/json",
        "subject": data["task_id"],
        "data": data,
    }


async def unpublished(url: str) -> int:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return int(
                (
                    await conn.execute(
                        sa.text(
                            "SELECT count(*) FROM outbox WHERE seq IS NULL"
                            " OR seq > coalesce((SELECT published_seq FROM relay_progress WHERE id = 1), 0)"
                        )
                    )
                ).scalar_one()
            )
    finally:
        await engine.dispose()


async def test_a_crash_between_commit_and_publish_loses_nothing(
    pg: str, prefix: str, amqp: aio_pika.abc.AbstractChannel, tmp_path: Path
) -> None:
    # The first process commits but cannot publish (its broker address answers nothing),
    # then dies by SIGKILL: the events are committed and unsent.
    dead_broker = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    env = {"ORCH_DATABASE_URL": pg, "ORCH_EVENTS__NAME_PREFIX": prefix}
    first = ServerProcess({**env, "ORCH_BROKER_URL": dead_broker}, log_path=tmp_path / "first.log").start()
    with first.client() as c:
        ids = [
            c.post("/api/v1/tasks", json={"description": f"t{i}", "project_id": "crash"}).json()["task_id"]
            for i in range(5)
        ]
        # Its relay has tried to publish them and failed: the kill lands while it retries.
        await eventually(
            lambda: "outbox_relay" in c.get("/api/v1/health/detailed").json()["details"],
            what="the relay's failed publish",
        )
    assert first.proc is not None
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    assert await unpublished(pg) >= 10, "the events were committed and not published"

    # Declare the exchange and a tap before the restart, so nothing published is missed.
    await amqp.declare_exchange(prefix + "task.events", aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await tap(amqp, prefix)
    with ServerProcess({**env, "ORCH_BROKER_URL": AMQP_URL}, log_path=tmp_path / "second.log").start():
        created: set[str] = set()
        for _ in range(200):
            msg = await queue.get(fail=False, no_ack=True)
            if msg is None:
                if created == set(ids):
                    break
                await asyncio.sleep(0.05)
                continue
            body = orjson.loads(msg.body)
            if body["type"] == "dats.task.created":
                created.add(body["subject"])
        assert created == set(ids), "every committed task.created went out after the restart"
        for _ in range(100):
            if await unpublished(pg) == 0:
                break
            await asyncio.sleep(0.05)
        assert await unpublished(pg) == 0, "the outbox drained"


async def test_two_replicas_never_over_dispatch(
    pg: str, prefix: str, amqp: aio_pika.abc.AbstractChannel, tmp_path: Path
) -> None:
    limit, total = 3, 24
    env = {
        "ORCH_DATABASE_URL": pg,
        "ORCH_BROKER_URL": AMQP_URL,
        "ORCH_EVENTS__NAME_PREFIX": prefix,
        "ORCH_MAX_CONCURRENT_PER_PROJECT": str(limit),
    }
    a = ServerProcess(env, log_path=tmp_path / "a.log").start()
    b = ServerProcess(env, log_path=tmp_path / "b.log").start()
    try:
        ready = await amqp.declare_queue(exclusive=True, auto_delete=True)
        await ready.bind(prefix + "task.events", routing_key="task.ready.*")
        task_exchange = await amqp.get_exchange(prefix + "task.events")
        qa_exchange = await amqp.get_exchange(prefix + "qa.events")

        async def worker() -> None:
            """Stands in for the worker and QA services: every task.ready gets an output and a
            validation, after a short random delay so completions interleave."""
            async with ready.iterator() as it:
                async for msg in it:
                    async with msg.process():
                        data = orjson.loads(msg.body)["data"]
                        await asyncio.sleep(secrets.randbelow(50) / 1000)
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

        async def submit(url: str, i: int) -> str:
            async with httpx.AsyncClient(base_url=url, timeout=10) as c:
                r = await c.post("/api/v1/tasks", json={"description": f"race {i}", "project_id": "race"})
                assert r.status_code == 201
                return str(r.json()["task_id"])

        ids = await asyncio.gather(*(submit((a if i % 2 else b).url, i) for i in range(total)))
        async with httpx.AsyncClient(base_url=a.url, timeout=10) as c:
            for _ in range(600):
                page = (
                    await c.get(
                        "/api/v1/tasks", params={"project_id": "race", "status": "completed", "limit": 1}
                    )
                ).json()
                if page["total"] == total:
                    break
                await asyncio.sleep(0.1)
            assert page["total"] == total, "every task completed"
        worker_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker_task
    finally:
        a.terminate()
        b.terminate()

    # Replay the history: at no moment were more than `limit` tasks in flight.
    engine = create_async_engine(pg)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    sa.text(
                        "SELECT h.task_id, h.from_status, h.to_status, h.created_at, h.id "
                        "FROM task_history h "
                        "JOIN tasks t ON t.id = h.task_id WHERE t.project_id = 'race' "
                        "AND h.from_status IS DISTINCT FROM h.to_status ORDER BY h.created_at, h.id"
                    )
                )
            ).all()
            processed = int(
                (await conn.execute(sa.text("SELECT count(*) FROM processed_events"))).scalar_one()
            )
            dispatches = int(
                (
                    await conn.execute(
                        sa.text(
                            "SELECT count(*) FROM task_history "
                            "WHERE from_status = 'pending' AND to_status = 'running'"
                        )
                    )
                ).scalar_one()
            )
    finally:
        await engine.dispose()
    in_flight, peak = 0, 0
    events: list[tuple[datetime, int, int]] = []
    for _tid, frm, to, at, hid in rows:
        delta = (to in ("running", "validating")) - (frm in ("running", "validating"))
        events.append((at, hid, delta))
    for _at, _hid, delta in sorted(events):
        in_flight += delta
        peak = max(peak, in_flight)
    assert peak <= limit, f"{peak} tasks of the project were in flight at once (limit {limit})"
    assert peak == limit, "the limit was reached (the test exercised the race)"
    assert dispatches == total, "each task was dispatched exactly once"
    assert processed == 2 * total, "every worker and QA event was handled exactly once"
    assert {str(r[0]) for r in rows} == set(ids) and len(set(ids)) == total


async def test_replicas_survive_random_sigkills(
    pg: str, prefix: str, amqp: aio_pika.abc.AbstractChannel, tmp_path: Path
) -> None:
    """Submission load and worker/QA traffic while replicas are SIGKILLed and restarted."""
    limit, projects, kills = 4, ("k1", "k2", "k3"), 4
    env = {
        "ORCH_DATABASE_URL": pg,
        "ORCH_BROKER_URL": AMQP_URL,
        "ORCH_EVENTS__NAME_PREFIX": prefix,
        "ORCH_MAX_CONCURRENT_PER_PROJECT": str(limit),
    }
    replicas = [ServerProcess(env, log_path=tmp_path / f"r{i}.log").start() for i in range(2)]
    ready = await amqp.declare_queue(exclusive=True, auto_delete=True)
    await ready.bind(prefix + "task.events", routing_key="task.ready.*")
    task_exchange = await amqp.get_exchange(prefix + "task.events")
    qa_exchange = await amqp.get_exchange(prefix + "qa.events")
    sent_events: set[str] = set()
    acknowledged: list[str] = []
    stop = asyncio.Event()

    async def worker() -> None:
        async with ready.iterator() as it:
            async for msg in it:
                async with msg.process():
                    data = orjson.loads(msg.body)["data"]
                    tid, attempt = data["task_id"], data["attempt"]
                    art = {"id": f"art-{tid}-{attempt}", "type": "code", "path": "x.py"}
                    # Deterministic ids: a redelivered task.ready produces the same events again.
                    out = envelope("task.output.created", {"task_id": tid, "artifacts": [art]}, "/worker")
                    out["id"] = f"out-{tid}-{attempt}"
                    ok = envelope("task.validated", {"task_id": tid}, "/qa")
                    ok["id"] = f"ok-{tid}-{attempt}"
                    sent_events.update((out["id"], ok["id"]))
                    await task_exchange.publish(
                        aio_pika.Message(orjson.dumps(out), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        routing_key="task.output.created",
                    )
                    await qa_exchange.publish(
                        aio_pika.Message(orjson.dumps(ok), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                        routing_key="task.validated",
                    )

    async def submitter(n: int) -> None:
        i = 0
        async with httpx.AsyncClient(timeout=5) as c:
            while not stop.is_set():
                target = replicas[(i + n) % 2]
                i += 1
                try:
                    r = await c.post(
                        f"{target.url}/api/v1/tasks",
                        json={"description": f"chaos {n}-{i}", "project_id": projects[i % 3]},
                    )
                except httpx.TransportError:
                    await asyncio.sleep(0.05)  # that replica is down: not acknowledged
                    continue
                if r.status_code == 201:
                    acknowledged.append(r.json()["task_id"])
                await asyncio.sleep(0.02)

    async def killer() -> None:
        for k in range(kills):
            await asyncio.sleep(2.0)  # the load runs between kills
            victim = replicas[secrets.randbelow(2)]
            assert victim.proc is not None
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait(10)
            await asyncio.sleep(0.5)  # down a while: submissions meet a dead replica
            replicas[replicas.index(victim)] = ServerProcess(
                env, port=victim.port, log_path=tmp_path / f"restart{k}.log"
            ).start("--no-migrate")
        stop.set()

    workers = [asyncio.create_task(worker())]
    try:
        await asyncio.gather(killer(), *(submitter(n) for n in range(4)))
        async with httpx.AsyncClient(base_url=replicas[0].url, timeout=10) as c:
            for _ in range(900):
                done = 0
                for p in projects:
                    page = (
                        await c.get(
                            "/api/v1/tasks",
                            params=[("project_id", p), ("status", "completed"), ("limit", "1")],
                        )
                    ).json()
                    done += page["total"]
                everything = (await c.get("/api/v1/tasks", params={"limit": 1})).json()["total"]
                if done == everything:
                    break
                await asyncio.sleep(0.1)
            assert done == everything, f"{everything - done} tasks did not reach a final state"
            for tid in acknowledged:
                assert (await c.get(f"/api/v1/tasks/{tid}")).json()["status"] == "completed"
        for _ in range(100):
            if await unpublished(pg) == 0:
                break
            await asyncio.sleep(0.1)
        assert await unpublished(pg) == 0, "the outbox drained"
    finally:
        for w in workers:
            w.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await w
        for r in replicas:
            r.kill()

    engine = create_async_engine(pg)
    try:
        async with engine.connect() as conn:
            stored = [str(x) for x in (await conn.execute(sa.text("SELECT id FROM tasks"))).scalars()]
            processed = set((await conn.execute(sa.text("SELECT event_id FROM processed_events"))).scalars())
            rows = (
                await conn.execute(
                    sa.text(
                        "SELECT t.project_id, h.from_status, h.to_status, h.created_at, h.id "
                        "FROM task_history h JOIN tasks t ON t.id = h.task_id "
                        "WHERE h.from_status IS DISTINCT FROM h.to_status ORDER BY h.created_at, h.id"
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    assert len(acknowledged) == len(set(acknowledged)) > 50
    assert set(acknowledged) <= set(stored), "every acknowledged task exists"
    assert len(stored) == len(set(stored))
    assert processed == sent_events, "every worker and QA event was handled, once (deduplicated by id)"
    in_flight = dict.fromkeys(projects, 0)
    for project, frm, to, _at, _hid in rows:
        in_flight[project] += (to in ("running", "validating")) - (frm in ("running", "validating"))
        assert in_flight[project] <= limit, f"project {project} exceeded its limit"
    print(
        f"chaos: {len(acknowledged)} acknowledged, {len(stored)} stored, {kills} kills, "
        f"{len(processed)} events"
    )
