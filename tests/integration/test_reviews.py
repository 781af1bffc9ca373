"""Human review end to end, on SQLite and PostgreSQL, through the in-process bus and through
RabbitMQ: QA's review.requested, the decisions over HTTP and from another team's review UI
(review.completed), double decisions, cancel during review, the changes-requested loop, and
the echo of this service's own review.completed."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import orjson
import pytest
from aio_pika.abc import AbstractIncomingMessage

from orchestration_service.events.memory import MemoryBus
from tests.conftest import AMQP_URL, Service, make_settings, missing_service, start_service
from tests.integration.test_event_lifecycle import cloud_event, output_event
from tests.integration.test_rabbitmq_bus import delete_topology
from tests.integration.test_tasks_api import submit, wait_for_status
from tests.waiting import eventually

PROBLEM = "application/problem+json"


def review_requested(task_id: str, **extra: Any) -> dict[str, Any]:
    data = {
        "task_id": task_id,
        "review_id": "qa-rev-1",
        "reason": "confidence 0.41 is below the profile's bar",
        "qa_result_id": "qa-9",
        "checklist": ["handles n = 0", "no recursion limit"],
        **extra,
    }
    return cloud_event("review.requested", data, source="/qa-service")


def review_completed(task_id: str, decision: str, **extra: Any) -> dict[str, Any]:
    return cloud_event(
        "review.completed",
        {"task_id": task_id, "decision": decision, "reviewer": "carol", **extra},
        source="/review-ui",
    )


class Harness:
    """One service and the bus it runs on; ``send`` delivers as another service would."""

    def __init__(self, svc: Service, prefix: str | None) -> None:
        self.svc = svc
        self.prefix = prefix  # None: the in-process bus
        self.seen: list[dict[str, Any]] = []  # what this service published (RabbitMQ: a tap)
        self._conn: aio_pika.abc.AbstractRobustConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._dlq: aio_pika.abc.AbstractQueue | None = None

    @property
    def memory(self) -> MemoryBus | None:
        bus = self.svc.container.bus
        return bus if isinstance(bus, MemoryBus) else None

    async def start(self) -> None:
        if self.prefix is None:
            return
        await eventually(lambda: self.svc.container.bus.consuming, timeout=15, what="the consumer")
        self._conn = await aio_pika.connect_robust(AMQP_URL, timeout=5)
        self._channel = await self._conn.channel()
        tap = await self._channel.declare_queue(exclusive=True, auto_delete=True)
        for exchange in ("task.events", "qa.events"):
            await tap.bind(self.prefix + exchange, routing_key="#")
        self._dlq = await self._channel.get_queue(f"{self.prefix}orchestration-events.dlq", ensure=True)

        async def on_message(m: AbstractIncomingMessage) -> None:
            async with m.process():
                self.seen.append({"routing_key": m.routing_key, "envelope": orjson.loads(m.body)})

        await tap.consume(on_message)

    async def stop(self) -> None:
        if self._conn is not None:
            await self._conn.close()

    async def send(self, envelope: dict[str, Any] | bytes, key: str, exchange: str = "qa.events") -> None:
        body = envelope if isinstance(envelope, bytes) else orjson.dumps(envelope)
        if self.memory is not None:
            await self.memory.inject(exchange, key, envelope)
            await self.memory.drain()
            return
        assert self._channel is not None and self.prefix is not None
        ex = await self._channel.get_exchange(self.prefix + exchange, ensure=True)
        await ex.publish(aio_pika.Message(body, content_type="application/cloudevents+json"), routing_key=key)

    def _published(self) -> list[tuple[str, dict[str, Any]]]:
        if self.memory is not None:
            return [(m.routing_key, m.envelope) for m in list(self.memory.published)]
        return [(s["routing_key"], s["envelope"]) for s in self.seen]

    async def published(self, name: str, task_id: str, count: int = 1) -> list[dict[str, Any]]:
        def found() -> list[dict[str, Any]]:
            hits = [e for k, e in self._published() if k == name and e.get("subject") == task_id]
            return hits if len(hits) >= count else []

        return await eventually(found, timeout=15, what=f"{count} {name} of {task_id}")

    async def dead_letters(self, count: int = 1) -> list[str]:
        """The reasons of the dead letters so far (waits for ``count``)."""
        if self.memory is not None:
            return await eventually(
                lambda: (
                    [r or "" for _m, r in self.memory.dead_letters]
                    if self.memory and len(self.memory.dead_letters) >= count
                    else []
                ),
                what="dead letters",
            )
        assert self._dlq is not None
        got: list[str] = []

        async def more() -> bool:
            assert self._dlq is not None
            m = await self._dlq.get(fail=False, no_ack=True)
            if m is not None:
                got.append(str((m.headers or {}).get("x-death-reason") or m.headers))
            return len(got) >= count

        await eventually(more, timeout=15, what="dead letters")
        return got

    async def history(self, task_id: str) -> list[dict[str, Any]]:
        return list((await self.svc.client.get(f"/api/v1/tasks/{task_id}/history")).json()["items"])

    async def awaiting_review(self, **body: Any) -> tuple[str, str]:
        """A task QA sent to review: (task id, review id)."""
        task = await submit(self.svc, **body)
        tid = str(task["task_id"])
        await wait_for_status(self.svc, tid, "running", timeout=15)
        await self.send(output_event(tid), "task.output.created", "task.events")
        await wait_for_status(self.svc, tid, "validating", timeout=15)
        await self.send(review_requested(tid), "review.requested")
        await wait_for_status(self.svc, tid, "awaiting_review", timeout=15)
        return tid, await self.review_of(tid)

    async def review_of(self, task_id: str, status: str = "open") -> str:
        async def find() -> str | None:
            r = await self.svc.client.get("/api/v1/reviews", params={"status": status})
            ids = [i["review_id"] for i in r.json()["items"] if i["task_id"] == task_id]
            return ids[-1] if ids else None

        return str(await eventually(find, what=f"an {status} review of {task_id}"))


@pytest.fixture(params=["memory", "rabbitmq"])
async def h(request: pytest.FixtureRequest, clean_db: str) -> AsyncIterator[Harness]:
    prefix = None
    events: dict[str, Any] = {}
    if request.param == "rabbitmq":
        prefix = f"t{secrets.token_hex(4)}."
        try:
            conn = await aio_pika.connect(AMQP_URL, timeout=5)
            await conn.close()
        except Exception as exc:
            missing_service("RabbitMQ", exc)
        events = {"broker_url": AMQP_URL, "name_prefix": prefix}
    svc, lifespan = await start_service(make_settings(clean_db, events=events))
    harness = Harness(svc, prefix)
    try:
        await harness.start()
        yield harness
    finally:
        await harness.stop()
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)
        if prefix is not None:
            await delete_topology(prefix)


async def decide(h: Harness, review_id: str, action: str, body: dict[str, Any] | None = None) -> Any:
    return await h.svc.client.post(f"/api/v1/reviews/{review_id}/{action}", json=body)


# -- through the broker, decided over HTTP -------------------------------------------------
async def test_approval_completes_the_task_with_the_reviewer_in_its_provenance(h: Harness) -> None:
    tid, rid = await h.awaiting_review()
    doc = (await h.svc.client.get(f"/api/v1/tasks/{tid}")).json()
    assert doc["deadline_at"] is None  # a person's time is not the worker's: no timeout
    review = (await h.svc.client.get(f"/api/v1/reviews/{rid}")).json()
    assert review["status"] == "open" and review["task"]["status"] == "awaiting_review"
    assert review["reason"].startswith("confidence 0.41") and review["qa_review_id"] == "qa-rev-1"
    assert review["output"] == {"content": "def fib(n): ..."}
    assert review["artifacts"][0]["id"] == "art-1"
    assert review["checklist"] == ["handles n = 0", "no recursion limit"]

    r = await decide(h, rid, "approve", {"comment": "looks right"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "decided" and r.json()["decision"] == "approved"
    done = await wait_for_status(h.svc, tid, "completed")
    record = (await h.svc.client.get(f"/api/v1/provenance/{done['provenance_id']}")).json()
    assert record["verification"]["verified_by"] == "anonymous"
    assert record["verification"]["details"]["reviewer"] == "anonymous"
    assert record["verification"]["details"]["review_id"] == rid
    (event,) = await h.published("review.completed", tid)
    assert event["source"] == "/orchestration-service"
    data = event["data"]
    assert (data["review_id"], data["task_id"], data["project_id"]) == (rid, tid, "proj-1")
    assert (data["decision"], data["reviewer"], data["comment"]) == ("approved", "anonymous", "looks right")
    assert data["qa_review_id"] == "qa-rev-1" and data["decided_at"]
    await h.published("task.completed", tid)
    transitions = [(e["from"], e["to"]) for e in await h.history(tid) if e["from"] != e["to"]]
    assert transitions[-2:] == [("validating", "awaiting_review"), ("awaiting_review", "completed")]


async def test_rejection_fails_the_task_and_a_second_decision_is_a_409(h: Harness) -> None:
    tid, rid = await h.awaiting_review()
    r = await decide(h, rid, "reject", {"reason": "wrong algorithm"})
    assert r.status_code == 200, r.text
    failed = await wait_for_status(h.svc, tid, "failed")
    assert failed["error"]["detail"]["reason"] == "wrong algorithm"
    (event,) = await h.published("review.completed", tid)
    assert (event["data"]["decision"], event["data"]["reason"]) == ("rejected", "wrong algorithm")
    await h.published("task.failed", tid)

    again = await decide(h, rid, "approve", {})
    assert again.status_code == 409
    assert again.headers["content-type"].startswith(PROBLEM)
    assert again.json()["type"] == "urn:dats:orchestration:problem:review-already-decided"
    assert (await h.svc.client.get(f"/api/v1/tasks/{tid}")).json()["status"] == "failed"


async def test_changes_requested_loop_ends_in_approval(h: Harness) -> None:
    tid, rid = await h.awaiting_review()
    r = await decide(h, rid, "request-changes", {"feedback": "handle negative n"})
    assert r.status_code == 200, r.text
    doc = await wait_for_status(h.svc, tid, "running")
    assert doc["attempt"] == 2
    ready = await h.published("task.ready.tiny", tid, count=2)
    assert ready[-1]["data"]["attempt"] == 2 and ready[-1]["data"]["feedback"] == "handle negative n"
    (event,) = await h.published("review.completed", tid)
    assert event["data"]["decision"] == "changes_requested"
    assert event["data"]["feedback"] == "handle negative n"

    # The second attempt goes through QA to a second review, which a person approves.
    await h.send(output_event(tid, art="art-2"), "task.output.created", "task.events")
    await wait_for_status(h.svc, tid, "validating")
    await h.send(review_requested(tid, review_id="qa-rev-2"), "review.requested")
    await wait_for_status(h.svc, tid, "awaiting_review")
    second = await h.review_of(tid)
    assert second != rid
    assert (await decide(h, second, "approve")).status_code == 200
    done = await wait_for_status(h.svc, tid, "completed")
    assert done["artifacts"][0]["id"] == "art-2"
    listed = (await h.svc.client.get("/api/v1/reviews", params={"status": "decided"})).json()
    assert [i["review_id"] for i in listed["items"]] == [rid, second]  # oldest first
    assert [i["decision"] for i in listed["items"]] == ["changes_requested", "approved"]


async def test_changes_requested_past_max_attempts_fails(h: Harness) -> None:
    tid, rid = await h.awaiting_review(options={"max_attempts": 1})
    assert (await decide(h, rid, "request-changes", {"feedback": "again"})).status_code == 200
    doc = await wait_for_status(h.svc, tid, "failed")
    assert doc["attempt"] == 1


async def test_cancel_during_review_closes_the_review(h: Harness) -> None:
    tid, rid = await h.awaiting_review()
    r = await h.svc.client.post(f"/api/v1/tasks/{tid}/cancel", json={"reason": "not needed"})
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    review = (await h.svc.client.get(f"/api/v1/reviews/{rid}")).json()
    assert review["status"] == "closed" and review["closed_reason"] == "not needed"
    assert (await h.svc.client.get("/api/v1/reviews", params={"status": "open"})).json()["items"] == []
    late = await decide(h, rid, "approve", {})
    assert late.status_code == 409 and late.json()["type"].endswith(":review-already-decided")
    # A decision from another UI arriving now is recorded and ignored, not dead-lettered.
    await h.send(review_completed(tid, "approved"), "review.completed")
    await eventually(
        lambda: _noted(h, tid, "ignored review.completed"), what="the late decision in the history"
    )
    assert (await h.svc.client.get(f"/api/v1/tasks/{tid}")).json()["status"] == "cancelled"


async def _noted(h: Harness, task_id: str, text: str) -> bool:
    return any(text in (e["reason"] or "") for e in await h.history(task_id))


# -- decided by another team's review UI, through the broker ----------------------------------
async def test_a_review_completed_from_the_broker_decides_once(h: Harness) -> None:
    tid, rid = await h.awaiting_review()
    await h.send(
        review_completed(tid, "approved", review_id="qa-rev-1", comment="ok by me"), "review.completed"
    )
    done = await wait_for_status(h.svc, tid, "completed", timeout=15)
    record = (await h.svc.client.get(f"/api/v1/provenance/{done['provenance_id']}")).json()
    assert record["verification"]["verified_by"] == "carol"
    review = (await h.svc.client.get(f"/api/v1/reviews/{rid}")).json()
    assert (review["decision"], review["reviewer"], review["decision_text"]) == (
        "approved",
        "carol",
        "ok by me",
    )
    assert review["decided_via"].startswith("event:review.completed:")

    # A second decision is recorded in the history and ignored; nothing is dead-lettered.
    await h.send(review_completed(tid, "rejected", reason="too late"), "review.completed")
    await eventually(lambda: _noted(h, tid, "ignored review.completed"), what="the second decision noted")
    assert (await h.svc.client.get(f"/api/v1/tasks/{tid}")).json()["status"] == "completed"
    # The sender published its decision itself: this service does not repeat it.
    assert not [
        e for k, e in h._published() if k == "review.completed" and e["source"] == "/orchestration-service"
    ]
    if h.memory is not None:
        assert not h.memory.dead_letters


async def test_the_echo_of_our_own_review_completed_changes_nothing(h: Harness) -> None:
    """This service subscribes to qa.events, so its own review.completed comes back."""
    tid, rid = await h.awaiting_review(options={"max_attempts": 3})
    assert (await decide(h, rid, "request-changes", {"feedback": "more tests"})).status_code == 200
    (echo,) = await h.published("review.completed", tid)
    await wait_for_status(h.svc, tid, "running")
    before = await h.history(tid)
    # Delivered again explicitly (the bus already delivered it once): still nothing changes.
    await h.send(echo, "review.completed")
    # A later event through the same queue is applied, so the echo before it was handled.
    await h.send(output_event(tid, art="art-3"), "task.output.created", "task.events")
    await wait_for_status(h.svc, tid, "validating")
    after = await h.history(tid)
    assert after[: len(before)] == before
    assert [e["to"] for e in after[len(before) :]] == ["validating"]
    assert (await h.svc.client.get(f"/api/v1/reviews/{rid}")).json()["decision"] == "changes_requested"
    if h.memory is not None:
        assert not h.memory.dead_letters


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ("no-task", "schema: review.requested: data.task_id"),
        ("bad-decision", "schema: review.completed: data.decision"),
        ("unknown-task", "unknown-task"),
    ],
)
async def test_a_poison_review_event_is_dead_lettered(h: Harness, event: str, reason: str) -> None:
    tid, rid = await h.awaiting_review()
    key = "review.completed"
    if event == "no-task":
        body, key = cloud_event("review.requested", {"reason": "x"}, source="/qa-service"), "review.requested"
    elif event == "bad-decision":
        body = review_completed(tid, "maybe")
    else:
        body = review_completed(str(uuid.uuid4()), "approved")
    before = await h.history(tid)
    await h.send(body, key)
    reasons = await h.dead_letters()
    assert any(reason in r for r in reasons), reasons
    assert await h.history(tid) == before
    # The consumer goes on: a valid decision after the poison is applied.
    await h.send(review_completed(tid, "rejected", reason="no"), "review.completed")
    await wait_for_status(h.svc, tid, "failed", timeout=15)
    assert (await h.svc.client.get(f"/api/v1/reviews/{rid}")).json()["decision"] == "rejected"


async def test_a_task_awaiting_review_frees_its_slot_and_does_not_time_out(clean_db: str) -> None:
    settings = make_settings(clean_db, task_management={"max_concurrent_per_project": 1})
    svc, lifespan = await start_service(settings)
    h = Harness(svc, None)
    try:
        tid, _rid = await h.awaiting_review(options={"timeout_seconds": 1})
        # With a limit of 1, the next task runs while the first waits for a person.
        other = await submit(svc)
        await wait_for_status(svc, other["task_id"], "running")
        # Past the attempt's timeout, a sweep leaves the task in review.
        started = (await svc.client.get(f"/api/v1/tasks/{tid}")).json()["started_at"]
        assert started
        loop = asyncio.get_running_loop()
        until = loop.time() + 1.5
        await eventually(lambda: loop.time() > until, timeout=5, what="the attempt's timeout to pass")
        await svc.container.sweeper.tick()
        assert (await svc.client.get(f"/api/v1/tasks/{tid}")).json()["status"] == "awaiting_review"
    finally:
        with contextlib.suppress(Exception):
            await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)


async def test_a_decision_counts_for_the_worker_whose_output_was_reviewed(h: Harness) -> None:
    """GET /workers counts a human's decision as QA's: approved → completed, rejected or
    changes requested → rejected (the worker's attempt is no longer open)."""
    approved, rid_a = await h.awaiting_review()
    rejected, rid_r = await h.awaiting_review()
    assert (await decide(h, rid_a, "approve")).status_code == 200
    assert (await decide(h, rid_r, "reject", {"reason": "wrong"})).status_code == 200
    await wait_for_status(h.svc, approved, "completed")
    await wait_for_status(h.svc, rejected, "failed")
    r = await h.svc.client.get("/api/v1/workers")
    worker = {w["worker_id"]: w for w in r.json()["items"]}["worker-7"]
    assert (worker["completed"], worker["rejected"], worker["in_flight"]) == (1, 1, 0)
