"""Routing after submission, on SQLite and PostgreSQL, against fake Agent and RAG services
that are real HTTP servers: agent decisions, fallbacks to the built-in analyzer (slow,
failing, malformed, refused, breaker open), RAG context, and decomposition into dependent
subtasks driven end to end through the in-process bus."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from orchestration_service.db.tables import artifact_dependencies
from orchestration_service.services.lifecycle import utcnow
from tests.conftest import Service, make_settings, start_service
from tests.integration.fake_services import Agent, FakeService, Reply, dead_url
from tests.integration.test_event_lifecycle import Harness, cloud_event, output_event
from tests.integration.test_tasks_api import submit, wait_for_status
from tests.waiting import eventually

FAST = {"agent_timeout_seconds": 2.0, "rag_timeout_seconds": 2.0}


# -- fixtures and helpers --------------------------------------------------------------------
@pytest.fixture(scope="session")
def agent_server() -> Iterator[FakeService]:
    fake = FakeService("agent")
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def rag_server() -> Iterator[FakeService]:
    fake = FakeService("rag")
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def agent(agent_server: FakeService) -> FakeService:
    agent_server.reset()
    Agent().install(agent_server)
    return agent_server


@pytest.fixture
def rag(rag_server: FakeService) -> FakeService:
    rag_server.reset()
    return rag_server


@contextlib.asynccontextmanager
async def serve(db_url: str, **routing: Any) -> AsyncIterator[Harness]:
    svc, lifespan = await start_service(make_settings(db_url, routing=routing))
    try:
        yield Harness(svc)
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)


async def wait_routed(svc: Service, task_id: str, timeout: float = 8.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        doc = (await svc.client.get(f"/api/v1/tasks/{task_id}")).json()
        if doc["routing"] is not None:
            return dict(doc)
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"task {task_id} was not routed ({doc['status']})")
        await asyncio.sleep(0.02)


async def reasons(h: Harness, task_id: str) -> list[str]:
    return [str(e["reason"]) for e in await h.history(task_id)]


async def complete(h: Harness, task_id: str, art: str) -> dict[str, Any]:
    """Drive a running task to completed: the worker's output, then QA's validation."""
    await wait_for_status(h.svc, task_id, "running")
    await h.send(output_event(task_id, art=art))
    await h.send(
        cloud_event("task.validated", {"task_id": task_id, "confidence": 0.9}, source="/qa-service"),
        "task.validated",
        "qa.events",
    )
    return await wait_for_status(h.svc, task_id, "completed")


def ready_of(h: Harness, task_id: str) -> list[dict[str, Any]]:
    """The task.ready.* events published so far for ``task_id``."""
    return [
        m.envelope
        for m in h.bus.published
        if m.routing_key.startswith("task.ready.") and m.envelope["subject"] == task_id
    ]


async def ready(h: Harness, task_id: str, timeout: float = 5.0) -> dict[str, Any]:
    """The first task.ready.* event of ``task_id`` (waits for the outbox relay)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not ready_of(h, task_id):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no task.ready for {task_id}")
        await asyncio.sleep(0.02)
    return ready_of(h, task_id)[0]


# -- the agent decides -----------------------------------------------------------------------
async def test_agent_answers_decide_the_route(clean_db: str, agent: FakeService) -> None:
    agent.answer(
        "/analyze",
        {
            "mode": "fix_bug",
            "domain": "code-vision",
            "needs_decomposition": False,
            "estimated_complexity": "high",
            "qa_profile": "security",
            "unknown_extra": "ignored",
        },
    )
    agent.answer("/estimate", {"recommended_tier": "frontier", "estimated_tokens": 5000, "confidence": 0.7})
    async with serve(clean_db, agent_service_url=agent.url, **FAST) as h:
        tid = (await submit(h.svc, description="Write a fibonacci function", project_id="p-agent"))["task_id"]
        doc = await wait_for_status(h.svc, tid, "running")
        assert (doc["mode"], doc["domain"], doc["qa_profile"], doc["tier"]) == (
            "fix_bug",
            "code-vision",
            "security",
            "frontier",
        )
        assert doc["routing"]["analyzer"] == "agent-service"
        assert doc["routing"]["estimate"]["estimated_tokens"] == 5000
        ready = (await h.published("task.ready.frontier", tid))[0]
        assert ready["data"]["context"]["routing"]["analyzer"] == "agent-service"
        assert "tier frontier (estimate: confidence 0.7" in ready["data"]["context"]["routing"]["reason"]
        assert any(r.startswith("routed by agent-service: mode fix_bug") for r in await reasons(h, tid))
    analyze = agent.calls_to("/analyze")[0].body
    assert analyze == {"request": "Write a fibonacci function", "project_id": "p-agent"}
    estimate = agent.calls_to("/estimate")[0].body
    assert estimate == {"task_id": tid, "description": "Write a fibonacci function", "domain": "code-vision"}


async def test_pins_win_over_the_agent(clean_db: str, agent: FakeService) -> None:
    async with serve(clean_db, agent_service_url=agent.url, **FAST) as h:
        options = {"domain": "documentation", "tier": "large", "qa_profile": "human"}
        tid = (await submit(h.svc, options=options))["task_id"]
        doc = await wait_for_status(h.svc, tid, "running")
        assert (doc["domain"], doc["tier"], doc["qa_profile"], doc["mode"]) == (
            "documentation",
            "large",
            "human",
            "modify",  # not pinned: the agent's
        )
        assert doc["routing"]["analyzer"] == "agent-service"
        assert doc["routing"]["pinned"] == ["domain", "tier", "qa_profile"]
    assert agent.calls_to("/estimate") == []  # a pinned tier needs no estimate


async def test_estimate_failure_takes_the_tier_from_the_rules(clean_db: str, agent: FakeService) -> None:
    agent.answer("/estimate", Reply(status=404, json={"detail": "no"}))
    async with serve(clean_db, agent_service_url=agent.url, **FAST) as h:
        tid = (await submit(h.svc))["task_id"]
        doc = await wait_for_status(h.svc, tid, "running")
        assert doc["routing"]["analyzer"] == "agent-service"
        assert doc["tier"] == "tiny"  # the rules: code-general, few words
        assert "from builtin rules: estimate failed: HTTP 404" in doc["routing"]["reason"]


@pytest.mark.parametrize(
    "pins",
    [{"tier": "huge"}, {"domain": "quantum"}, {"qa_profile": "lenient"}, {"decompose": "yes"}],
)
async def test_invalid_pins_are_422(clean_db: str, pins: dict[str, Any]) -> None:
    async with serve(clean_db) as h:
        r = await h.svc.client.post(
            "/api/v1/tasks", json={"description": "x", "project_id": "p", "options": pins}
        )
        assert r.status_code == 422, r.text
        assert r.json()["type"].endswith(":validation-error")


# -- fallbacks to the built-in analyzer ------------------------------------------------------
async def test_slow_agent_keeps_submission_fast_and_falls_back_after_the_timeout(
    clean_db: str, agent: FakeService
) -> None:
    Agent().install(agent, delay=3.0)
    async with serve(clean_db, agent_service_url=agent.url, agent_timeout_seconds=1.0) as h:
        assert (await h.svc.client.get("/api/v1/tasks", params={"limit": 1})).status_code == 200  # warm
        took: list[float] = []
        for _ in range(3):
            start = time.monotonic()
            r = await h.svc.client.post(
                "/api/v1/tasks", json={"description": "Fix the crash in the parser", "project_id": "p-slow"}
            )
            took.append(time.monotonic() - start)
            assert r.status_code == 201
        # Behaviour, not speed: a submission that waited for routing would take the 1 s timeout.
        assert max(took) < 0.9, f"submissions took {took}"
        tid = r.json()["task_id"]
        doc = await wait_for_status(h.svc, tid, "running", timeout=5)
        assert time.monotonic() - start >= 1.0
        assert doc["routing"]["analyzer"] == "builtin"
        assert doc["routing"]["reason"].startswith("agent-service failed: timeout after 1s; builtin: ")
        assert doc["mode"] == "fix_bug"
        ready = (await h.published("task.ready.tiny", tid))[0]
        assert ready["data"]["context"]["routing"]["reason"].startswith("agent-service failed: timeout")


async def test_server_errors_are_retried_then_builtin(clean_db: str, agent: FakeService) -> None:
    agent.answer("/analyze", Reply(status=503, json={"detail": "overloaded"}))
    async with serve(clean_db, agent_service_url=agent.url, remote_retries=2, **FAST) as h:
        tid = (await submit(h.svc))["task_id"]
        doc = await wait_for_status(h.svc, tid, "running")
        assert doc["routing"]["analyzer"] == "builtin"
        assert doc["routing"]["reason"].startswith(
            "agent-service failed: HTTP 503 (after 3 attempts); builtin:"
        )
    assert len(agent.calls_to("/analyze")) == 3


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (Reply(raw=b"<html>not json</html>"), "malformed answer: not JSON"),
        (
            Reply(
                json={
                    "mode": "modify",
                    "domain": "quantum",
                    "needs_decomposition": False,
                    "qa_profile": "human",
                }
            ),
            "malformed answer: domain: Input should be",
        ),
        (
            Reply(json={"mode": "modify", "domain": "documentation", "qa_profile": "human"}),
            "malformed answer: needs_decomposition: Field required",
        ),
        (
            Reply(
                json={
                    "mode": "modify",
                    "domain": "documentation",
                    "needs_decomposition": "yes",
                    "qa_profile": "human",
                }
            ),
            "malformed answer: needs_decomposition: Input should be a valid boolean",
        ),
        (Reply(json=["a", "list"]), "malformed answer: body: Input should be an object"),
    ],
    ids=["not-json", "unknown-enum", "missing-field", "mistyped-field", "not-an-object"],
)
async def test_malformed_answers_fall_back_with_the_reason(
    clean_db: str, agent: FakeService, reply: Reply, why: str
) -> None:
    agent.answer("/analyze", reply)
    async with serve(clean_db, agent_service_url=agent.url, **FAST) as h:
        tid = (await submit(h.svc))["task_id"]
        doc = await wait_for_status(h.svc, tid, "running")
        assert doc["routing"]["analyzer"] == "builtin"
        assert doc["routing"]["reason"].startswith(f"agent-service failed: {why}"), doc["routing"]["reason"]
        assert any(
            r.startswith(f"routed by builtin: agent-service failed: {why}") for r in await reasons(h, tid)
        )
    assert len(agent.calls_to("/analyze")) == 1  # a malformed answer is not retried


async def test_connection_refused_falls_back(clean_db: str) -> None:
    async with serve(clean_db, agent_service_url=dead_url(), remote_retries=1, **FAST) as h:
        tid = (await submit(h.svc))["task_id"]
        doc = await wait_for_status(h.svc, tid, "running")
        assert doc["routing"]["analyzer"] == "builtin"
        assert doc["routing"]["reason"].startswith("agent-service failed: connection failed: ConnectError")
        assert "(after 2 attempts)" in doc["routing"]["reason"]
        health = (await h.svc.client.get("/api/v1/health/detailed")).json()
        assert health["dependencies"]["agent_service"] == "degraded"
        assert health["dependencies"]["rag_service"] == "unconfigured"


async def test_breaker_opens_after_repeated_failures_then_recovers(clean_db: str, agent: FakeService) -> None:
    agent.answer("/analyze", Reply(status=500))
    settings = {
        "agent_service_url": agent.url,
        "remote_retries": 0,
        "breaker_failure_threshold": 3,
        "breaker_reset_seconds": 4.0,
        **FAST,
    }
    async with serve(clean_db, **settings) as h:
        for _ in range(3):  # one at a time: three consecutive failures
            await wait_routed(h.svc, (await submit(h.svc))["task_id"])
        assert len(agent.calls_to("/analyze")) == 3
        ids = [(await submit(h.svc))["task_id"] for _ in range(5)]
        for tid in ids:
            doc = await wait_routed(h.svc, tid)
            assert doc["routing"]["analyzer"] == "builtin"
            assert (
                "agent-service failed: circuit open after 3 consecutive failures" in doc["routing"]["reason"]
            )
        assert len(agent.calls_to("/analyze")) == 3  # not one call while open
        health = (await h.svc.client.get("/api/v1/health/detailed")).json()
        assert health["dependencies"]["agent_service"] == "degraded"
        assert health["details"]["agent_service"]["breaker"] == "open"

        Agent().install(agent)  # the agent recovers; after the cool-down one trial passes
        await asyncio.sleep(4.1)  # real time past the breaker's 4 s cool-down (cannot be short)
        doc = await wait_routed(h.svc, (await submit(h.svc))["task_id"])
        assert doc["routing"]["analyzer"] == "agent-service"
        health = (await h.svc.client.get("/api/v1/health/detailed")).json()
        assert health["dependencies"]["agent_service"] == "connected"
        assert health["details"]["agent_service"]["breaker"] == "closed"


async def test_analyses_in_flight_are_bounded(clean_db: str, agent: FakeService) -> None:
    Agent().install(agent, delay=0.4)
    async with serve(clean_db, agent_service_url=agent.url, max_concurrent_analyses=3, **FAST) as h:
        ids = await asyncio.gather(*(submit(h.svc, project_id=f"p{i}") for i in range(10)))
        for t in ids:
            await wait_routed(h.svc, t["task_id"], timeout=15)
    assert agent.max_in_flight == 3


async def test_cancelled_during_analysis_is_never_dispatched(clean_db: str, agent: FakeService) -> None:
    Agent().install(agent, delay=0.8)
    async with serve(clean_db, agent_service_url=agent.url, **FAST) as h:
        tid = (await submit(h.svc))["task_id"]
        deadline = time.monotonic() + 5
        while not agent.calls_to("/analyze"):  # the analysis has started
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        r = await h.svc.client.post(f"/api/v1/tasks/{tid}/cancel", json={"reason": "not needed"})
        assert r.status_code == 200
        router = h.svc.container.dispatcher  # the analysis ends, and its result is dealt with
        await eventually(lambda: router.routed + router.discarded == 1, what="the analysis to end")
        doc = (await h.svc.client.get(f"/api/v1/tasks/{tid}")).json()
        assert doc["status"] == "cancelled" and doc["routing"] is None
        assert ready_of(h, tid) == []
        assert (await h.history(tid))[-1]["reason"] == "not needed"


# -- claims ----------------------------------------------------------------------------------
async def test_two_routers_route_each_task_once(clean_db: str, agent: FakeService) -> None:
    Agent().install(agent, delay=0.05)
    routing = {"agent_service_url": agent.url, **FAST}
    async with serve(clean_db, **routing) as one, serve(clean_db, **routing) as two:
        ids = [
            t["task_id"]
            for t in await asyncio.gather(*(submit(one.svc, project_id=f"p{i}") for i in range(30)))
        ]
        for tid in ids:
            await wait_routed(two.svc, tid)
        routers = (one.svc.container.dispatcher, two.svc.container.dispatcher)
        await eventually(  # no analysis left anywhere that could route a task a second time
            lambda: (
                all(r.analyses_in_flight == 0 for r in routers)
                and sum(r.routed + r.discarded for r in routers) >= 30
            ),
            what="both routers idle",
        )
        for tid in ids:
            routed = [r for r in await reasons(one, tid) if r.startswith("routed by")]
            assert len(routed) == 1, (tid, routed)
    assert len(agent.calls_to("/analyze")) == 30
    assert one.svc.container.dispatcher.routed + two.svc.container.dispatcher.routed == 30


async def test_claims_exclude_each_other_until_the_lease_expires(clean_db: str) -> None:
    async with serve(clean_db) as h:
        await h.svc.container.dispatcher.stop()  # no routing in the background: claim by hand
        # A task that asks for decomposition is not routed at submission: it waits for a claim.
        tid = uuid.UUID((await submit(h.svc, options={"decompose": True}))["task_id"])
        storage = h.svc.container.storage
        now = utcnow()
        async with storage.transaction() as uow:
            first = await uow.tasks.claim_unrouted(now, now + timedelta(seconds=30), 10)
        async with storage.transaction() as uow:
            second = await uow.tasks.claim_unrouted(now, now + timedelta(seconds=30), 10)
        later = now + timedelta(seconds=31)  # the first claimer crashed: its lease expired
        async with storage.transaction() as uow:
            third = await uow.tasks.claim_unrouted(later, later + timedelta(seconds=30), 10)
        assert [r["id"] for r in first] == [tid]
        assert second == []
        assert [r["id"] for r in third] == [tid]


# -- RAG -------------------------------------------------------------------------------------
async def test_rag_context_is_delivered_in_task_ready(clean_db: str, rag: FakeService) -> None:
    rag.answer(
        "/query",
        {
            "context": "## Related\n`fib.py` computes Fibonacci numbers.",
            "sources": [{"artifact_id": "art-9", "relevance_score": 0.91}],
            "tokens_used": 42,
        },
    )
    async with serve(clean_db, rag_service_url=rag.url, rag_max_tokens=1500, **FAST) as h:
        tid = (await submit(h.svc, project_id="p-rag"))["task_id"]
        await wait_for_status(h.svc, tid, "running")
        ready = (await h.published("task.ready.tiny", tid))[0]
        ctx = ready["data"]["context"]
        assert ctx["rag"]["context"].startswith("## Related")
        assert ctx["rag"]["sources"] == [{"artifact_id": "art-9", "relevance_score": 0.91}]
        assert ctx["routing"]["analyzer"] == "builtin"
        health = (await h.svc.client.get("/api/v1/health/detailed")).json()
        assert health["dependencies"]["rag_service"] == "connected"
        assert health["dependencies"]["agent_service"] == "unconfigured"
    assert rag.calls_to("/query")[0].body == {
        "query": "Write a fibonacci function",
        "project_id": "p-rag",
        "max_tokens": 1500,
        "search_mode": "hybrid",
    }


@pytest.mark.parametrize("failure", ["500", "slow"])
async def test_failing_rag_dispatches_without_context(clean_db: str, rag: FakeService, failure: str) -> None:
    if failure == "500":
        rag.answer("/query", Reply(status=500))
    else:
        rag.answer("/query", {"context": "late", "sources": []}, delay=3.0)
    async with serve(clean_db, rag_service_url=rag.url, rag_timeout_seconds=0.5, remote_retries=1) as h:
        start = time.monotonic()
        tid = (await submit(h.svc))["task_id"]
        await wait_for_status(h.svc, tid, "running")
        assert time.monotonic() - start < 2.0  # no delay beyond the RAG timeout (and a retry)
        ready = (await h.published("task.ready.tiny", tid))[0]
        assert "rag" not in ready["data"]["context"]
        why = "HTTP 500 (after 2 attempts)" if failure == "500" else "timeout after 0.5s"
        assert f"no RAG context: rag-service failed: {why}; dispatched without it" in await reasons(h, tid)


# -- decomposition ---------------------------------------------------------------------------
DIAMOND = [
    {"id": "A", "description": "Write the parser", "is_atomic": True, "dependencies": []},
    {"id": "B", "description": "Write the evaluator", "is_atomic": True, "dependencies": ["A"]},
    {"id": "C", "description": "Write the printer", "is_atomic": True, "dependencies": ["A"]},
    {"id": "D", "description": "Write the REPL", "is_atomic": True, "dependencies": ["B", "C"]},
]
PARENT = "Build a calculator: parser, evaluator, printer, then a REPL"


def planning_agent(agent: FakeService, subtasks: list[dict[str, Any]], depth: int = 1) -> None:
    Agent(
        analysis={
            "mode": "new_project",
            "domain": "code-general",
            "needs_decomposition": True,
            "estimated_complexity": "high",
            "qa_profile": "testing",
        }
    ).install(agent)
    agent.answer("/decompose", {"subtasks": subtasks, "decomposition_depth": depth})


async def children(h: Harness, parent_id: str) -> dict[str, dict[str, Any]]:
    """The parent's subtasks by plan id (from their descriptions)."""
    doc = (await h.svc.client.get(f"/api/v1/tasks/{parent_id}")).json()
    by_desc = {s["description"]: s for s in doc["subtasks"]}
    return {p["id"]: by_desc[p["description"]] for p in DIAMOND if p["description"] in by_desc}


async def records_depended_on(db_url: str, record_id: str) -> set[str]:
    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(
                sa.select(artifact_dependencies.c.depends_on).where(
                    artifact_dependencies.c.artifact_id == uuid.UUID(record_id)
                )
            )
            return {str(r) for r in rows.scalars()}
    finally:
        await engine.dispose()


async def test_diamond_runs_in_dependency_order_and_completes_the_parent(
    clean_db: str, agent: FakeService
) -> None:
    planning_agent(agent, DIAMOND)
    async with serve(clean_db, agent_service_url=agent.url, **FAST) as h:
        parent = (await submit(h.svc, description=PARENT, options={"decompose": True}))["task_id"]
        doc = await wait_for_status(h.svc, parent, "decomposing")
        assert doc["routing"]["analyzer"] == "agent-service"
        assert [p["id"] for p in doc["routing"]["plan"]] == ["A", "B", "C", "D"]
        kids = await children(h, parent)
        assert set(kids) == {"A", "B", "C", "D"}
        ids = {k: v["task_id"] for k, v in kids.items()}
        assert kids["A"]["depends_on"] == []
        assert set(kids["D"]["depends_on"]) == {ids["B"], ids["C"]}
        assert kids["B"]["depends_on"] == [ids["A"]] and kids["C"]["depends_on"] == [ids["A"]]
        for k in "ABCD":  # every child is routed on its own (and not decomposed further)
            child = await wait_routed(h.svc, ids[k])
            assert child["parent_id"] == parent and child["routing"]["analyzer"] == "agent-service"
            assert "decompose" not in child["options"]
        assert len(agent.calls_to("/decompose")) == 1
        assert agent.calls_to("/decompose")[0].body == {
            "task_id": parent,
            "description": PARENT,
            "max_depth": 5,
        }
        history = await h.history(parent)
        assert ("pending", "decomposing") in [(e["from"], e["to"]) for e in history]

        # Only A may run: B and C wait for A, D for both.
        await wait_for_status(h.svc, ids["A"], "running")
        await asyncio.sleep(0.3)  # gives a wrong early dispatch time to show (a check that it does NOT)
        for k in "BCD":
            assert (await h.svc.client.get(f"/api/v1/tasks/{ids[k]}")).json()["status"] == "pending"
        a = await complete(h, ids["A"], "art-A")
        for k in "BC":
            await wait_for_status(h.svc, ids[k], "running")
            inputs = (await ready(h, ids[k]))["data"]["context"]["inputs"]
            assert [(i["artifact_id"], i["task_id"], i["provenance_id"]) for i in inputs] == [
                ("art-A", ids["A"], a["provenance_id"])
            ]
        assert (await h.svc.client.get(f"/api/v1/tasks/{ids['D']}")).json()["status"] == "pending"
        b = await complete(h, ids["B"], "art-B")
        await asyncio.sleep(0.2)  # as above: D must not start while C is unfinished
        assert (await h.svc.client.get(f"/api/v1/tasks/{ids['D']}")).json()["status"] == "pending"
        c = await complete(h, ids["C"], "art-C")
        await wait_for_status(h.svc, ids["D"], "running")
        inputs = (await ready(h, ids["D"]))["data"]["context"]["inputs"]
        assert sorted(i["artifact_id"] for i in inputs) == ["art-B", "art-C"]
        d = await complete(h, ids["D"], "art-D")

        done = await wait_for_status(h.svc, parent, "completed")
        assert sorted(art["id"] for art in done["artifacts"]) == ["art-A", "art-B", "art-C", "art-D"]
        assert (await h.published("task.completed", parent))[0]["data"]["task_id"] == parent
        assert ready_of(h, parent) == []  # the parent itself never went to a worker

        # Provenance: each child's record depends on the records of its dependencies.
        assert await records_depended_on(clean_db, d["provenance_id"]) == {
            b["provenance_id"],
            c["provenance_id"],
        }
        assert await records_depended_on(clean_db, b["provenance_id"]) == {a["provenance_id"]}
        assert await records_depended_on(clean_db, c["provenance_id"]) == {a["provenance_id"]}
        assert await records_depended_on(clean_db, a["provenance_id"]) == set()
        record = (await h.svc.client.get(f"/api/v1/provenance/{d['provenance_id']}")).json()
        assert sorted(record["inputs_consumed"]) == ["art-B", "art-C"]


async def test_chain_runs_one_after_the_other(clean_db: str, agent: FakeService) -> None:
    chain = [
        {"id": 1, "description": "Write the parser", "dependencies": []},
        {"id": 2, "description": "Write the evaluator", "dependencies": [1]},
        {"id": 3, "description": "Write the printer", "dependencies": [2]},
    ]
    planning_agent(agent, chain)
    async with serve(clean_db, agent_service_url=agent.url, **FAST) as h:
        parent = (await submit(h.svc, description=PARENT, options={"decompose": True}))["task_id"]
        await wait_for_status(h.svc, parent, "decomposing")
        kids = await children(h, parent)
        order = [kids[k]["task_id"] for k in "ABC"]  # descriptions of A, B, C in DIAMOND
        started: list[str] = []
        for n, tid in enumerate(order):
            await wait_for_status(h.svc, tid, "running")
            started.append(tid)
            for later in order[n + 1 :]:
                assert (await h.svc.client.get(f"/api/v1/tasks/{later}")).json()["status"] == "pending"
            await complete(h, tid, f"art-{n}")
        assert started == order
        await wait_for_status(h.svc, parent, "completed")


@pytest.mark.parametrize(
    ("subtasks", "why"),
    [
        (
            [
                {"id": "A", "description": "a", "dependencies": ["C"]},
                {"id": "B", "description": "b", "dependencies": ["A"]},
                {"id": "C", "description": "c", "dependencies": ["B"]},
            ],
            "cycle: 'A' -> 'C' -> 'B' -> 'A'",
        ),
        (
            [
                {"id": "A", "description": "a", "dependencies": []},
                {"id": "B", "description": "b", "dependencies": ["Z"]},
            ],
            "subtask 'B' depends on unknown subtask 'Z'",
        ),
        (
            [{"id": str(i), "description": f"step {i}", "dependencies": []} for i in range(4)],
            "the plan has 4 subtasks, more than the limit of 3",
        ),
        ([], "the plan has no subtasks"),
        (
            [{"id": "A", "description": "a"}, {"id": "A", "description": "again"}],
            "duplicate subtask id 'A'",
        ),
    ],
    ids=["cycle", "unknown-dependency", "too-many", "empty", "duplicate-id"],
)
async def test_bad_plans_run_the_task_whole(
    clean_db: str, agent: FakeService, subtasks: list[dict[str, Any]], why: str
) -> None:
    planning_agent(agent, subtasks)
    async with serve(clean_db, agent_service_url=agent.url, max_subtasks=3, **FAST) as h:
        tid = (await submit(h.svc, description=PARENT, options={"decompose": True}))["task_id"]
        doc = await wait_for_status(h.svc, tid, "running")
        assert doc["subtasks"] == []
        assert why in doc["routing"]["not_decomposed"]
        assert any(
            r.startswith("runs whole: the plan was rejected: ") and why in r for r in await reasons(h, tid)
        )


async def test_plan_too_deep_runs_whole(clean_db: str, agent: FakeService) -> None:
    planning_agent(agent, DIAMOND, depth=3)
    async with serve(clean_db, agent_service_url=agent.url, max_depth=2, **FAST) as h:
        tid = (await submit(h.svc, description=PARENT, options={"decompose": True}))["task_id"]
        doc = await wait_for_status(h.svc, tid, "running")
        assert "the plan is 3 levels deep; only 2 of max_depth 2 are left" in doc["routing"]["not_decomposed"]
    assert agent.calls_to("/decompose")[0].body["max_depth"] == 2


async def test_decompose_without_an_agent_runs_whole_and_says_why(clean_db: str) -> None:
    async with serve(clean_db) as h:
        tid = (await submit(h.svc, description=PARENT, options={"decompose": True}))["task_id"]
        await wait_for_status(h.svc, tid, "running")
        assert (
            "runs whole: no Agent Service is configured and the built-in analyzer cannot plan subtasks"
            in await reasons(h, tid)
        )


async def test_decompose_not_needed_or_failing_runs_whole(clean_db: str, agent: FakeService) -> None:
    async with serve(clean_db, agent_service_url=agent.url, **FAST) as h:
        tid = (await submit(h.svc, options={"decompose": True}))["task_id"]
        await wait_for_status(h.svc, tid, "running")
        assert "runs whole: agent-service says the task does not need decomposition" in await reasons(h, tid)
        planning_agent(agent, DIAMOND)
        agent.answer("/decompose", Reply(status=500))
        tid = (await submit(h.svc, options={"decompose": True}))["task_id"]
        await wait_for_status(h.svc, tid, "running")
        assert any(
            r.startswith("runs whole: decomposition failed: agent-service failed: HTTP 500")
            for r in await reasons(h, tid)
        )


async def test_cancelling_a_decomposing_parent_cancels_its_children(
    clean_db: str, agent: FakeService
) -> None:
    planning_agent(agent, DIAMOND)
    async with serve(clean_db, agent_service_url=agent.url, **FAST) as h:
        parent = (await submit(h.svc, description=PARENT, options={"decompose": True}))["task_id"]
        await wait_for_status(h.svc, parent, "decomposing")
        ids = {k: v["task_id"] for k, v in (await children(h, parent)).items()}
        await wait_for_status(h.svc, ids["A"], "running")
        r = await h.svc.client.post(f"/api/v1/tasks/{parent}/cancel", json={"reason": "scrapped"})
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        for tid in ids.values():
            doc = (await h.svc.client.get(f"/api/v1/tasks/{tid}")).json()
            assert doc["status"] == "cancelled"
            assert (await h.history(tid))[-1]["reason"] == "parent cancelled: scrapped"
        assert await h.published("task.cancelled", ids["A"])  # the worker is told


async def test_a_child_failing_for_good_fails_the_parent(clean_db: str, agent: FakeService) -> None:
    planning_agent(agent, DIAMOND)
    async with serve(clean_db, agent_service_url=agent.url, **FAST) as h:
        parent = (await submit(h.svc, description=PARENT, options={"decompose": True}))["task_id"]
        await wait_for_status(h.svc, parent, "decomposing")
        ids = {k: v["task_id"] for k, v in (await children(h, parent)).items()}
        await complete(h, ids["A"], "art-A")
        await wait_for_status(h.svc, ids["B"], "running")
        await wait_for_status(h.svc, ids["C"], "running")
        await h.send(cloud_event("task.failed", {"task_id": ids["B"], "error": "OOM"}), "task.failed")
        await wait_for_status(h.svc, ids["B"], "failed")
        doc = await wait_for_status(h.svc, parent, "failed")
        assert doc["error"]["reason"] == "subtask failed"
        assert doc["error"]["detail"]["subtask_id"] == ids["B"]
        assert (await h.published("task.failed", parent))[0]["data"]["reason"] == "subtask failed"
        # The others can no longer matter: C (running) and D (blocked forever) are cancelled.
        for k in "CD":
            await wait_for_status(h.svc, ids[k], "cancelled")
        assert (await h.svc.client.get(f"/api/v1/tasks/{ids['A']}")).json()["status"] == "completed"


# -- health ----------------------------------------------------------------------------------
async def test_health_reports_agent_and_rag_truthfully(
    clean_db: str, agent: FakeService, rag: FakeService
) -> None:
    async with serve(clean_db) as h:
        deps = (await h.svc.client.get("/api/v1/health/detailed")).json()["dependencies"]
        assert deps["agent_service"] == deps["rag_service"] == "unconfigured"
    async with serve(clean_db, agent_service_url=agent.url, rag_service_url=dead_url(), **FAST) as h:
        # Nothing called yet: the probe decides (GET /health).
        body = (await h.svc.client.get("/api/v1/health/detailed")).json()
        assert body["dependencies"]["agent_service"] == "connected"
        assert body["details"]["agent_service"]["probe"] == "ok"
        assert body["dependencies"]["rag_service"] == "degraded"
        assert body["details"]["rag_service"]["probe"] == "connection refused"
        assert body["status"] == "healthy"  # routing degrades gracefully: still healthy


# -- the diamond end to end on RabbitMQ ------------------------------------------------------
@pytest.mark.rabbitmq
async def test_diamond_end_to_end_on_rabbitmq(clean_db: str, agent: FakeService) -> None:
    import aio_pika
    import orjson

    from tests.conftest import AMQP_URL, missing_service
    from tests.integration.test_rabbitmq_bus import delete_topology, tap

    try:
        admin_conn = await aio_pika.connect(AMQP_URL, timeout=5)
    except Exception as exc:
        missing_service("RabbitMQ", exc)
        raise
    prefix = f"t{uuid.uuid4().hex[:8]}."
    planning_agent(agent, DIAMOND)
    settings = make_settings(
        clean_db,
        events={"broker_url": AMQP_URL, "name_prefix": prefix},
        routing={"agent_service_url": agent.url, **FAST},
    )
    svc, lifespan = await start_service(settings)
    admin = await admin_conn.channel()
    try:
        deadline = time.monotonic() + 15
        while not svc.container.bus.consuming:
            assert time.monotonic() < deadline, "the service's consumer did not attach"
            await asyncio.sleep(0.05)
        spy = await tap(admin, prefix)
        exchange = await admin.get_exchange(prefix + "task.events", ensure=True)
        ready_seen: dict[str, dict[str, Any]] = {}

        async def publish(key: str, envelope: dict[str, Any]) -> None:
            await exchange.publish(
                aio_pika.Message(
                    orjson.dumps(envelope),
                    content_type="application/cloudevents+json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=envelope["id"],
                ),
                routing_key=key,
            )

        async def ready_on_broker(task_id: str) -> dict[str, Any]:
            limit = time.monotonic() + 15
            while task_id not in ready_seen:
                assert time.monotonic() < limit, f"no task.ready for {task_id} on the broker"
                m = await spy.get(fail=False, no_ack=True)
                if m is None:
                    await asyncio.sleep(0.05)
                    continue
                if str(m.routing_key).startswith("task.ready."):
                    body = orjson.loads(m.body)
                    ready_seen.setdefault(body["subject"], body)
            return ready_seen[task_id]

        async def run(task_id: str, art: str) -> dict[str, Any]:
            await wait_for_status(svc, task_id, "running", timeout=15)
            await publish("task.output.created", output_event(task_id, art=art))
            await wait_for_status(svc, task_id, "validating", timeout=15)
            validated = cloud_event("task.validated", {"task_id": task_id, "confidence": 0.9}, source="/qa")
            await publish("task.validated", validated)
            return await wait_for_status(svc, task_id, "completed", timeout=15)

        parent = (await submit(svc, description=PARENT, options={"decompose": True}))["task_id"]
        await wait_for_status(svc, parent, "decomposing", timeout=15)
        doc = (await svc.client.get(f"/api/v1/tasks/{parent}")).json()
        by_desc = {s["description"]: s["task_id"] for s in doc["subtasks"]}
        ids = {p["id"]: by_desc[p["description"]] for p in DIAMOND}
        a = await run(ids["A"], "art-A")
        for k in "BC":
            inputs = (await ready_on_broker(ids[k]))["data"]["context"]["inputs"]
            assert [(i["artifact_id"], i["provenance_id"]) for i in inputs] == [("art-A", a["provenance_id"])]
        assert (await svc.client.get(f"/api/v1/tasks/{ids['D']}")).json()["status"] == "pending"
        b = await run(ids["B"], "art-B")
        c = await run(ids["C"], "art-C")
        inputs = (await ready_on_broker(ids["D"]))["data"]["context"]["inputs"]
        assert sorted(i["artifact_id"] for i in inputs) == ["art-B", "art-C"]
        d = await run(ids["D"], "art-D")
        await wait_for_status(svc, parent, "completed", timeout=15)
        d_deps = await records_depended_on(clean_db, d["provenance_id"])
        assert d_deps == {b["provenance_id"], c["provenance_id"]}
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)
        await admin_conn.close()
        await delete_topology(prefix)
