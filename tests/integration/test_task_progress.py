"""Heartbeats and progress, on SQLite and PostgreSQL: ``task.progress`` from the bus and the
HTTP ingress kept on the task (the latest wins; stale attempts and final tasks ignored; no
history row), invalid reports dead-lettered or answered 422, the task stream's ``progress``
events, and the heartbeat timeout (firing when a running task is silent, not while progress
flows). RabbitMQ: a report through the broker."""

# The fixtures shared with other modules are imported by name; pytest passes them as arguments.
# ruff: noqa: F811
from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import orjson
import pytest

from tests.asgi_stream import AsgiStream
from tests.conftest import AMQP_URL, Service, make_settings, start_service
from tests.integration.test_event_lifecycle import Harness, cloud_event, h, output_event  # noqa: F401
from tests.integration.test_http_events import CE, parse_sse, post_batch, post_event
from tests.integration.test_tasks_api import submit, wait_for_status
from tests.waiting import eventually


def progress_event(task_id: str, *, time: str | None = None, **data: Any) -> dict[str, Any]:
    env = cloud_event("task.progress", {"task_id": task_id, **data})
    if time is None:
        env.pop("time")  # the service stamps it on arrival
    else:
        env["time"] = time
    return env


async def doc(svc: Service, tid: str) -> dict[str, Any]:
    return dict((await svc.client.get(f"/api/v1/tasks/{tid}")).json())


async def test_progress_is_kept_on_the_task_without_a_history_row(h: Harness) -> None:
    tid = await h.running_task()
    before = await h.history(tid)
    first = progress_event(
        tid, attempt=1, progress=0.25, message="parsing", worker_id="w-1", time="2026-11-24T10:00:00Z"
    )
    await h.send(first, "task.progress")
    got = await eventually(lambda: _progress(h, tid), what="progress kept")
    assert got["value"] == 0.25 and got["message"] == "parsing" and got["worker_id"] == "w-1"
    assert got["attempt"] == 1 and got["at"] == "2026-11-24T10:00:00Z"
    # The later report wins; an older one arriving late changes nothing.
    await h.send(progress_event(tid, progress=0.5, time="2026-11-24T10:00:02Z"), "task.progress")
    await h.send(progress_event(tid, progress=0.4, time="2026-11-24T10:00:01Z"), "task.progress")
    assert (await doc(h.svc, tid))["progress"]["value"] == 0.5
    await h.send(progress_event(tid, progress=0.9), "task.progress")  # no time: now, the latest
    assert (await doc(h.svc, tid))["progress"]["value"] == 0.9
    await h.send(progress_event(tid, progress=0.6, time="2026-11-24T10:00:03Z"), "task.progress")
    assert (await doc(h.svc, tid))["progress"]["value"] == 0.9
    assert await h.history(tid) == before  # heartbeats are not history
    assert not h.bus.dead_letters


async def _progress(h: Harness, tid: str) -> dict[str, Any] | None:
    p = (await doc(h.svc, tid))["progress"]
    return dict(p) if p else None


async def test_progress_of_a_stale_attempt_or_a_final_task_is_ignored(h: Harness) -> None:
    tid = await h.running_task(options={"max_attempts": 3})
    await h.send(cloud_event("task.rejected", {"task_id": tid, "reason": "no"}), "task.rejected")
    await eventually(lambda: _attempt(h, tid, 2), what="the second attempt")
    await h.send(progress_event(tid, attempt=1, progress=0.7), "task.progress")  # the old worker
    assert (await doc(h.svc, tid))["progress"] is None
    await h.send(progress_event(tid, attempt=2, progress=0.1), "task.progress")
    assert (await doc(h.svc, tid))["progress"]["value"] == 0.1
    # Not running any more (validating, then final): ignored, nothing dead-lettered.
    await h.send(output_event(tid))
    await wait_for_status(h.svc, tid, "validating")
    await h.send(progress_event(tid, attempt=2, progress=0.3), "task.progress")
    assert (await doc(h.svc, tid))["progress"]["value"] == 0.1
    cancelled = (await submit(h.svc))["task_id"]
    await h.svc.client.post(f"/api/v1/tasks/{cancelled}/cancel")
    await wait_for_status(h.svc, cancelled, "cancelled")
    await h.send(progress_event(cancelled, progress=0.3), "task.progress")
    assert (await doc(h.svc, cancelled))["progress"] is None
    assert not h.bus.dead_letters
    r = await post_event(h.svc, progress_event(cancelled, progress=0.3))
    assert r.status_code == 202 and r.json()["outcome"] == "ignored"
    assert "cancelled" in r.json()["detail"]


async def _attempt(h: Harness, tid: str, n: int) -> bool:
    return bool((await doc(h.svc, tid))["attempt"] == n)


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        ({"progress": 1.5}, "data.progress", "schema: task.progress: data.progress"),
        ({"progress": -0.1}, "data.progress", "schema: task.progress: data.progress"),
        ({"task_id": None}, "data.task_id", "schema: task.progress: data.task_id"),
        ({"task_id": "no-such-task"}, "data.task_id", "unknown-task: task no-such-task does not exist"),
    ],
)
async def test_invalid_progress_is_dead_lettered_or_refused(
    h: Harness, data: dict[str, Any], field: str, reason: str
) -> None:
    tid = await h.running_task()
    env = progress_event(tid)
    env["data"].update(data)
    if data.get("task_id", "") is None:
        env["data"].pop("task_id")
    await h.send(env, "task.progress")
    assert h.bus.dead_letters and (h.bus.dead_letters[-1][1] or "").startswith(reason)
    r = await h.svc.client.post("/api/v1/events", content=orjson.dumps(env), headers=CE)
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["field"] == field
    assert (await doc(h.svc, tid))["progress"] is None


async def test_progress_over_the_http_ingress(h: Harness) -> None:
    tid = await h.running_task()
    r = await post_event(h.svc, progress_event(tid, progress=0.33, message="half-way there"))
    assert r.status_code == 202, r.text
    assert (await doc(h.svc, tid))["progress"]["message"] == "half-way there"
    # A heartbeat is not de-duplicated by id: the same report again is accepted and changes nothing.
    again = await post_event(h.svc, progress_event(tid, progress=0.33, time="2026-11-24T10:00:00Z"))
    assert again.status_code == 202


async def test_the_task_stream_sends_progress(clean_db: str) -> None:
    settings = make_settings(clean_db, events={"sse_progress_seconds": 0.05})
    svc, lifespan = await start_service(settings)
    try:
        h = Harness(svc)
        tid = await h.running_task()
        async with AsgiStream(svc.app, f"/api/v1/tasks/{tid}/stream") as stream:
            await stream.wait_for(b"event: snapshot\n")
            await post_event(svc, progress_event(tid, progress=0.5, message="compiling"))
            await stream.wait_for(b"event: progress\n")
            await post_event(svc, output_event(tid))
            await post_event(svc, cloud_event("task.validated", {"task_id": tid}, source="/qa-service"))
            events = parse_sse(await stream.read_to_end())
        kinds = [e["event"] for e in events]
        assert kinds[0] == "snapshot" and kinds.count("progress") == 1
        progress = next(e for e in events if e["event"] == "progress")
        assert progress["data"]["task_id"] == tid
        assert progress["data"]["progress"]["value"] == 0.5
        assert progress["data"]["progress"]["message"] == "compiling"
        assert int(progress["id"]) >= int(events[0]["id"])  # a position to resume from
        assert [e["data"]["to"] for e in events if e["event"] == "status"] == ["validating", "completed"]
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)


# -- the heartbeat timeout -----------------------------------------------------------------
async def test_a_silent_running_task_times_out_with_heartbeat_timeout(h: Harness) -> None:
    tid = await h.running_task(options={"heartbeat_timeout_seconds": 1, "max_attempts": 2})
    assert (await doc(h.svc, tid))["options"]["heartbeat_timeout_seconds"] == 1
    failed = await wait_for_status(h.svc, tid, "failed", timeout=15)
    assert failed["attempt"] == 2 and failed["error"]["reason"] == "heartbeat_timeout"
    reasons = [e["reason"] for e in await h.history(tid)]
    assert "retry after heartbeat_timeout" in reasons
    assert (await h.published("task.failed", tid))[0]["data"]["reason"] == "heartbeat_timeout"


async def test_the_heartbeat_timeout_does_not_fire_while_progress_flows(h: Harness) -> None:
    beating = await h.running_task(options={"heartbeat_timeout_seconds": 1, "max_attempts": 1})
    silent = await h.running_task(options={"heartbeat_timeout_seconds": 1, "max_attempts": 1})
    stop = asyncio.Event()

    async def heartbeat() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            await post_event(h.svc, progress_event(beating, progress=min(n / 100, 1.0)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)

    beats = asyncio.create_task(heartbeat())
    try:
        # The silent one, started after the beating one with the same timeout, times out first:
        # had the heartbeats not counted, the beating one would have gone before it.
        await wait_for_status(h.svc, silent, "failed", timeout=15)
        # And some more timeouts' worth of sweeps pass while progress keeps flowing.
        later = await submit(h.svc, options={"heartbeat_timeout_seconds": 1, "max_attempts": 1})
        await wait_for_status(h.svc, later["task_id"], "failed", timeout=15)
    finally:
        stop.set()
        await beats
    alive = await doc(h.svc, beating)
    assert alive["status"] == "running" and alive["attempt"] == 1 and alive["progress"]["value"] > 0
    # Silent from now on, it times out too.
    gone = await wait_for_status(h.svc, beating, "failed", timeout=15)
    assert gone["error"]["reason"] == "heartbeat_timeout"


async def test_the_configured_default_applies_and_output_counts_as_news(clean_db: str) -> None:
    settings = make_settings(
        clean_db, task_management={"sweep_interval_seconds": 0.2, "heartbeat_timeout_seconds": 1}
    )
    svc, lifespan = await start_service(settings)
    try:
        h = Harness(svc)
        silent = await h.running_task(options={"max_attempts": 1})
        answered = await h.running_task(options={"max_attempts": 1})
        await h.send(output_event(answered))  # the worker's output: QA's turn, no heartbeat due
        await wait_for_status(svc, answered, "validating")
        failed = await wait_for_status(svc, silent, "failed", timeout=15)
        assert failed["error"]["reason"] == "heartbeat_timeout"
        later = await h.running_task(options={"max_attempts": 1})
        await wait_for_status(svc, later, "failed", timeout=15)  # a second timeout's worth passed
        assert (await doc(svc, answered))["status"] == "validating"
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)


# -- RabbitMQ ----------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def on_rabbitmq(clean_db: str) -> AsyncIterator[tuple[Service, aio_pika.abc.AbstractExchange]]:
    from tests.integration.test_rabbitmq_bus import delete_topology, wait_until

    prefix = f"t-{uuid.uuid4().hex[:8]}-"
    settings = make_settings(clean_db, events={"broker_url": AMQP_URL, "name_prefix": prefix})
    svc, lifespan = await start_service(settings)
    connection = await aio_pika.connect_robust(AMQP_URL)
    try:
        await wait_until(lambda: svc.container.bus.consuming, 15, "the service's consumer")
        channel = await connection.channel()
        yield svc, await channel.get_exchange(prefix + "task.events", ensure=True)
    finally:
        await connection.close()
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)
        await delete_topology(prefix)


@pytest.mark.rabbitmq
async def test_progress_through_rabbitmq(clean_db: str) -> None:
    async with on_rabbitmq(clean_db) as (svc, exchange):
        tid = (await submit(svc))["task_id"]
        await wait_for_status(svc, tid, "running", timeout=15)
        for value in (0.2, 0.4, 0.6):
            env = progress_event(tid, progress=value, message=f"at {value}")
            await exchange.publish(
                aio_pika.Message(orjson.dumps(env), content_type="application/cloudevents+json"),
                routing_key="task.progress",
            )

        async def last_kept() -> bool:
            p = (await doc(svc, tid))["progress"]
            return bool(p and p["message"] == "at 0.6")

        await eventually(last_kept, timeout=15, what="the last report kept")
        history = (await svc.client.get(f"/api/v1/tasks/{tid}/history")).json()["items"]
        assert all("progress" not in e["reason"] for e in history)


@pytest.mark.rabbitmq
async def test_heartbeats_through_rabbitmq_in_batches(clean_db: str) -> None:
    """Reports arriving together are handled together: the latest of each task kept, a bad one
    dead-lettered with its reason, the good ones acked, the worker they name listed."""
    from tests.integration.test_rabbitmq_bus import drain_queue

    async with on_rabbitmq(clean_db) as (svc, exchange):
        tasks = [(await submit(svc))["task_id"] for _ in range(2)]
        for tid in tasks:
            await wait_for_status(svc, tid, "running", timeout=15)
        bad = progress_event(tasks[0], progress=2.0)
        messages = [
            progress_event(tid, progress=n / 100, worker_id="w-batch", time=f"2026-11-24T10:00:{n:02d}Z")
            for n in range(50)
            for tid in tasks
        ]
        messages.insert(10, bad)
        messages.append(progress_event(str(uuid.uuid4()), progress=0.5))  # no such task
        for env in messages:
            await exchange.publish(
                aio_pika.Message(orjson.dumps(env), content_type="application/cloudevents+json"),
                routing_key="task.progress",
            )

        async def all_kept() -> bool:
            kept = [((await doc(svc, tid))["progress"] or {}).get("value") for tid in tasks]
            return kept == [0.49, 0.49]

        await eventually(all_kept, timeout=15, what="the latest report of each task kept")
        bus = svc.container.bus
        connection = await aio_pika.connect_robust(AMQP_URL)
        try:
            admin = await connection.channel()
            dlq = await admin.declare_queue(bus.dlq_name, passive=True)  # type: ignore[attr-defined]
            dead = await drain_queue(dlq, settle=1.0)
            reasons = sorted(str(m.headers["x-death-reason"]) for m in dead)
            assert len(reasons) == 2, reasons
            assert reasons[0].startswith("schema: task.progress: data.progress")
            assert reasons[1].startswith("unknown-task: task ")
            listed = (await svc.client.get("/api/v1/workers")).json()["items"]
            assert [w["in_flight"] for w in listed if w["worker_id"] == "w-batch"] == [2]
            # Every report was acked: closing the service's connection hands none back.
            await bus.close()
            beats = await admin.declare_queue(bus.heartbeat_queue_name, passive=True)  # type: ignore[attr-defined]
            assert beats.declaration_result.message_count == 0
        finally:
            await connection.close()


async def test_a_batch_of_heartbeats_over_the_ingress_is_answered_per_report(service: Service) -> None:
    """Heartbeats in one ``cloudevents-batch`` request: answered in order, one by one; of a
    task's reports without a time the later in the batch wins; a stale attempt, an unknown
    task and a bad report are answered as alone; another event between them keeps its place."""
    svc = service
    a, b = [(await submit(svc))["task_id"] for _ in range(2)]
    for tid in (a, b):
        await wait_for_status(svc, tid, "running", timeout=15)
    batch = [
        progress_event(a, progress=0.1, worker_id="w-a"),
        progress_event(b, progress=0.2, attempt=2),  # not the current attempt
        progress_event(a, progress=0.3, message="later"),  # the same task: after the first
        progress_event(str(uuid.uuid4()), progress=0.5),  # no such task
        progress_event(b, progress=1.5),  # out of range
        output_event(b),
        progress_event(b, progress=0.9),  # b is validating now
    ]
    r = await post_batch(svc, batch)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["index"] for x in results] == list(range(len(batch)))
    assert [x["outcome"] for x in results] == [
        "processed",
        "ignored",
        "processed",
        "rejected",
        "rejected",
        "processed",
        "ignored",
    ]
    assert [results[3]["field"], results[4]["field"]] == ["data.task_id", "data.progress"]
    kept = (await doc(svc, a))["progress"]
    assert (kept["value"], kept["message"], kept["worker_id"]) == (0.3, "later", None)
    assert (await doc(svc, b))["progress"] is None
