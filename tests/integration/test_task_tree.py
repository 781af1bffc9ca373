"""Nested decomposition end to end, on SQLite and PostgreSQL, against the fake Agent Service
(a real HTTP server): subtasks the agent marks not atomic are planned again, the tree
completes bottom-up in dependency order, the cap on a tree, cancel of a middle task, the
tree route and the parents' provenance."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from orchestration_service.domain.access import Scope
from tests.asgi_stream import AsgiStream
from tests.conftest import Service, make_settings, start_service
from tests.integration.fake_services import Agent, FakeService
from tests.integration.test_event_lifecycle import Harness, output_event
from tests.integration.test_http_events import parse_sse
from tests.integration.test_routing import (
    FAST,
    complete,
    reasons,
    records_depended_on,
    serve,
)
from tests.integration.test_tasks_api import submit, wait_for_status
from tests.waiting import eventually

ROOT = "Ship the notes app: an API, a UI on it, then the user guide"
LEVEL_1 = [
    {"id": "api", "description": "Build the notes API", "is_atomic": False, "dependencies": []},
    {"id": "ui", "description": "Build the notes UI", "is_atomic": False, "dependencies": ["api"]},
    {"id": "docs", "description": "Write the user guide", "is_atomic": True, "dependencies": ["ui"]},
]
API = [
    {"id": "s", "description": "Write the notes schema", "is_atomic": True, "dependencies": []},
    {"id": "h", "description": "Write the notes handlers", "is_atomic": True, "dependencies": ["s"]},
]
UI = [
    {"id": "c", "description": "Write the UI components", "is_atomic": True, "dependencies": []},
    {"id": "p", "description": "Write the UI pages", "is_atomic": True, "dependencies": ["c"]},
]
NAMES = {
    "Build the notes API": "api",
    "Build the notes UI": "ui",
    "Write the user guide": "docs",
    "Write the notes schema": "schema",
    "Write the notes handlers": "handlers",
    "Write the UI components": "components",
    "Write the UI pages": "pages",
}
LEAVES = ("schema", "handlers", "components", "pages", "docs")


@pytest.fixture(scope="module")
def agent_server() -> Iterator[FakeService]:
    fake = FakeService("agent")
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def agent(agent_server: FakeService) -> FakeService:
    agent_server.reset()
    return agent_server


def tree_agent(fake: FakeService) -> None:
    Agent(
        analysis={
            "mode": "new_project",
            "domain": "code-general",
            "needs_decomposition": True,
            "estimated_complexity": "high",
            "qa_profile": "testing",
        },
        plans={ROOT: LEVEL_1, "Build the notes API": API, "Build the notes UI": UI},
    ).install(fake)


async def get_tree(svc: Service, task_id: str) -> dict[str, Any]:
    r = await svc.client.get(f"/api/v1/tasks/{task_id}/tree")
    assert r.status_code == 200, r.text
    return dict(r.json())


def flatten(node: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every node under (and with) ``node`` by its short name (the root as "root")."""
    out = {NAMES.get(node["description"], "root"): node}
    for child in node["children"]:
        out.update(flatten(child))
    return out


async def planned_tree(svc: Service, root: str, subtasks: int) -> dict[str, dict[str, Any]]:
    """Waits until the tree under ``root`` has ``subtasks`` subtasks; its nodes by name."""

    async def grown() -> dict[str, Any] | None:
        doc = await get_tree(svc, root)
        return doc if doc["subtask_count"] == subtasks else None

    return flatten(await eventually(grown, what=f"a tree of {subtasks} subtasks"))


async def doc(h: Harness, task_id: str) -> dict[str, Any]:
    return dict((await h.svc.client.get(f"/api/v1/tasks/{task_id}")).json())


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_three_levels_complete_bottom_up_in_dependency_order(clean_db: str, agent: FakeService) -> None:
    tree_agent(agent)
    async with serve(clean_db, agent_service_url=agent.url, **FAST) as h:
        root = (await submit(h.svc, description=ROOT, options={"decompose": True}))["task_id"]
        nodes = await planned_tree(h.svc, root, 7)
        ids = {name: str(n["task_id"]) for name, n in nodes.items()}

        # The shape: three levels, each node's siblings it waits for.
        top = nodes["root"]
        assert [NAMES[c["description"]] for c in top["children"]] == ["api", "ui", "docs"]
        assert [NAMES[c["description"]] for c in nodes["api"]["children"]] == ["schema", "handlers"]
        assert [NAMES[c["description"]] for c in nodes["ui"]["children"]] == ["components", "pages"]
        assert nodes["ui"]["depends_on"] == [ids["api"]] and nodes["docs"]["depends_on"] == [ids["ui"]]
        assert nodes["handlers"]["depends_on"] == [ids["schema"]]
        assert nodes["pages"]["depends_on"] == [ids["components"]]
        assert nodes["components"]["depends_on"] == []  # what it inherits shows on its parent
        assert set(nodes) == {"root", *NAMES.values()}
        assert all(
            set(n) == {"task_id", "status", "description", "depends_on", "children"} for n in top["children"]
        )
        await wait_for_status(h.svc, ids["api"], "decomposing")
        await wait_for_status(h.svc, ids["ui"], "decomposing")
        # The UI's first subtask also waits for the API, which its parent waited for.
        assert set((await doc(h, ids["components"]))["depends_on"]) == {ids["api"]}

        # Each level planned with the depth left.
        asked = {c.body["description"]: c.body["max_depth"] for c in agent.calls_to("/decompose")}
        assert asked == {ROOT: 5, "Build the notes API": 4, "Build the notes UI": 4}

        done = {}
        for name in LEAVES:
            done[name] = await complete(h, ids[name], f"art-{name}")
            if name == "handlers":
                await wait_for_status(h.svc, ids["api"], "completed")
            if name == "pages":
                await wait_for_status(h.svc, ids["ui"], "completed")
        final = await wait_for_status(h.svc, root, "completed")

        # Dependencies held at every level: nothing started before what it waits for
        # completed (the inherited wait included).
        docs = {name: await doc(h, tid) for name, tid in ids.items()}
        for name in LEAVES:
            for dep in docs[name]["depends_on"]:
                blocker = next(d for d in docs.values() if d["task_id"] == dep)
                assert at(docs[name]["started_at"]) >= at(blocker["completed_at"]), (
                    name,
                    blocker["description"],
                )
        assert at(docs["components"]["started_at"]) >= at(docs["api"]["completed_at"])
        # Parents complete after their last subtask, bottom-up.
        assert at(docs["api"]["completed_at"]) >= at(docs["handlers"]["completed_at"])
        assert at(final["completed_at"]) >= at(docs["docs"]["completed_at"])
        assert sorted(a["id"] for a in docs["api"]["artifacts"]) == ["art-handlers", "art-schema"]
        assert sorted(a["id"] for a in final["artifacts"]) == sorted(f"art-{n}" for n in LEAVES)
        assert all(n["status"] == "completed" for n in flatten(await get_tree(h.svc, root)).values())

        # Provenance: each parent's record has its direct subtasks' records as inputs.
        rec = {name: d["provenance_id"] for name, d in docs.items()}
        assert all(rec.values())
        assert await records_depended_on(clean_db, rec["root"]) == {rec["api"], rec["ui"], rec["docs"]}
        assert await records_depended_on(clean_db, rec["api"]) == {rec["schema"], rec["handlers"]}
        assert await records_depended_on(clean_db, rec["ui"]) == {rec["components"], rec["pages"]}
        record = (await h.svc.client.get(f"/api/v1/provenance/{rec['root']}")).json()
        assert {i["provenance_id"] for i in record["inputs"]} == {rec["api"], rec["ui"], rec["docs"]}
        assert sorted(record["inputs_consumed"]) == sorted(f"art-{n}" for n in LEAVES)
        assert record["verification"]["verified_by"] == "subtasks"
        completed = await h.published("task.completed", root)
        assert completed[0]["data"]["provenance_id"] == rec["root"]

        # A taint of a leaf's work reaches every record above it.
        r = await h.svc.client.post(
            f"/api/v1/provenance/{rec['schema']}/taint", json={"reason": "bad schema"}
        )
        assert r.status_code == 200, r.text
        # (The UI's subtasks consumed the API's artifacts, so its side is suspect too.)
        for name in ("handlers", "api", "components", "ui", "docs", "root"):
            assert (await h.svc.client.get(f"/api/v1/provenance/{rec[name]}")).json()["is_suspect"], name


async def test_a_plan_past_the_tree_cap_runs_its_task_whole(clean_db: str, agent: FakeService) -> None:
    tree_agent(agent)
    async with serve(clean_db, agent_service_url=agent.url, max_total_subtasks=4, **FAST) as h:
        root = (await submit(h.svc, description=ROOT, options={"decompose": True}))["task_id"]
        nodes = await planned_tree(h.svc, root, 3)
        ids = {name: str(n["task_id"]) for name, n in nodes.items()}
        # 3 subtasks, and each middle plan would add 2: both run whole, and say why.
        why = (
            "the task tree would have 5 subtasks (3 already, 2 planned), "
            "more than routing.max_total_subtasks 4"
        )
        for name in ("api", "ui"):
            routed = await eventually(lambda n=name: _not_decomposed(h, ids[n]), what=f"{name} routed")
            assert routed == why
            assert f"runs whole: {why}" in await reasons(h, ids[name])
        assert (await get_tree(h.svc, root))["subtask_count"] == 3
        for name in ("api", "ui", "docs"):
            await complete(h, ids[name], f"art-{name}")
        done = await wait_for_status(h.svc, root, "completed")
        assert sorted(a["id"] for a in done["artifacts"]) == ["art-api", "art-docs", "art-ui"]


async def test_a_subtask_at_max_depth_runs_whole(clean_db: str, agent: FakeService) -> None:
    tree_agent(agent)
    async with serve(clean_db, agent_service_url=agent.url, max_depth=1, **FAST) as h:
        root = (await submit(h.svc, description=ROOT, options={"decompose": True}))["task_id"]
        ids = {name: str(n["task_id"]) for name, n in (await planned_tree(h.svc, root, 3)).items()}
        for name in ("api", "ui"):
            why = await eventually(lambda n=name: _not_decomposed(h, ids[n]), what=f"{name} routed")
            assert why == "the task is at depth 1; subtasks would exceed max_depth 1"
        assert [c.body["description"] for c in agent.calls_to("/decompose")] == [ROOT]
        await wait_for_status(h.svc, ids["api"], "running")


async def _not_decomposed(h: Harness, task_id: str) -> str | None:
    routing = (await doc(h, task_id))["routing"]
    return None if routing is None else routing.get("not_decomposed")


async def test_cancelling_a_middle_task_cancels_its_subtree_and_fails_its_ancestors(
    clean_db: str, agent: FakeService
) -> None:
    tree_agent(agent)
    async with serve(clean_db, agent_service_url=agent.url, **FAST) as h:
        root = (await submit(h.svc, description=ROOT, options={"decompose": True}))["task_id"]
        ids = {name: str(n["task_id"]) for name, n in (await planned_tree(h.svc, root, 7)).items()}
        await wait_for_status(h.svc, ids["schema"], "running")
        await wait_for_status(h.svc, ids["ui"], "decomposing")
        r = await h.svc.client.post(f"/api/v1/tasks/{ids['api']}/cancel", json={"reason": "API dropped"})
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        # Its subtree goes with it; the worker running one of them is told.
        for name in ("schema", "handlers"):
            d = await doc(h, ids[name])
            assert d["status"] == "cancelled"
            assert (await h.history(ids[name]))[-1]["reason"] == "parent cancelled: API dropped"
        assert await h.published("task.cancelled", ids["schema"])
        # As with one level: a cancelled subtask fails its parent (here the top task), and
        # the rest of the tree, which could never complete, is cancelled.
        top = await doc(h, root)
        assert top["status"] == "failed"
        assert top["error"]["reason"] == "subtask was cancelled"
        assert top["error"]["detail"]["subtask_id"] == ids["api"]
        for name in ("ui", "components", "pages", "docs"):
            assert (await doc(h, ids[name]))["status"] == "cancelled", name
        statuses = {n: node["status"] for n, node in flatten(await get_tree(h.svc, root)).items()}
        assert statuses == {"root": "failed", **dict.fromkeys(NAMES.values(), "cancelled")}


async def test_the_top_tasks_stream_shows_transitions_at_every_level(
    clean_db: str, agent: FakeService
) -> None:
    # Four levels: the schema is planned again, into one migration.
    deep_api = [{**API[0], "is_atomic": False}, API[1]]
    migration = [{"id": "m", "description": "Write the migration", "is_atomic": True, "dependencies": []}]
    Agent(
        analysis={
            "mode": "new_project",
            "domain": "code-general",
            "needs_decomposition": True,
            "estimated_complexity": "high",
            "qa_profile": "testing",
        },
        plans={
            ROOT: LEVEL_1,
            "Build the notes API": deep_api,
            "Build the notes UI": UI,
            "Write the notes schema": migration,
        },
    ).install(agent)
    async with serve(clean_db, agent_service_url=agent.url, **FAST) as h:
        root = (await submit(h.svc, description=ROOT, options={"decompose": True}))["task_id"]
        tree = await eventually(lambda: _tree_of_size(h.svc, root, 8), what="four levels planned")
        leaf = tree["children"][0]["children"][0]["children"][0]
        assert leaf["description"] == "Write the migration"
        await wait_for_status(h.svc, str(leaf["task_id"]), "running")
        async with AsgiStream(h.svc.app, f"/api/v1/tasks/{root}/stream") as stream:
            await stream.wait_for(b"event: snapshot\n")  # opened after the tree was planned
            await h.send(output_event(str(leaf["task_id"]), art="art-migration"))
            await stream.wait_for(b'"to":"validating"')
        events = parse_sse(stream.text)
    moves = [(e["data"]["task_id"], e["data"]["to"]) for e in events[1:]]
    assert (str(leaf["task_id"]), "validating") in moves  # three levels down


async def _tree_of_size(svc: Service, root: str, subtasks: int) -> dict[str, Any] | None:
    doc = await get_tree(svc, root)
    return doc if doc["subtask_count"] == subtasks else None


@pytest.fixture
async def secured(clean_db: str) -> Any:
    svc, lifespan = await start_service(make_settings(clean_db, auth={"enabled": True}))
    try:
        yield svc
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)


async def bearer(svc: Service, projects: list[str]) -> dict[str, str]:
    raw, _ = await svc.container.keys.create(name=f"k-{projects[0]}", scope=Scope.WRITE, projects=projects)
    return {"Authorization": f"Bearer {raw}"}


async def test_tree_route_is_scoped_like_other_task_routes(secured: Service) -> None:
    c = secured.client
    mine, theirs = await bearer(secured, ["mine"]), await bearer(secured, ["theirs"])
    r = await c.post("/api/v1/tasks", json={"description": "a lone task", "project_id": "mine"}, headers=mine)
    tid = r.json()["task_id"]
    tree = await c.get(f"/api/v1/tasks/{tid}/tree", headers=mine)
    assert tree.status_code == 200
    assert tree.json() == {
        "task_id": tid,
        "status": tree.json()["status"],
        "description": "a lone task",
        "depends_on": [],
        "children": [],
        "subtask_count": 0,
        "truncated": False,
    }
    for task_id, headers in ((tid, theirs), (str(uuid.uuid4()), mine), ("not-a-uuid", mine)):
        r = await c.get(f"/api/v1/tasks/{task_id}/tree", headers=headers)
        assert r.status_code == 404, task_id
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["type"].endswith(":not-found")
    assert (await c.get(f"/api/v1/tasks/{tid}/tree")).status_code == 401


# -- the three-level tree end to end on RabbitMQ ----------------------------------------------
@pytest.mark.rabbitmq
async def test_three_levels_end_to_end_on_rabbitmq(clean_db: str, agent: FakeService) -> None:
    """Workers' and QA's events arrive through the broker; the parents' task.completed
    leave through it, bottom-up."""
    import aio_pika
    import orjson

    from tests.conftest import AMQP_URL, missing_service
    from tests.integration.test_event_lifecycle import cloud_event, output_event
    from tests.integration.test_rabbitmq_bus import delete_topology, tap

    try:
        admin_conn = await aio_pika.connect(AMQP_URL, timeout=5)
    except Exception as exc:
        missing_service("RabbitMQ", exc)
        raise
    prefix = f"t{uuid.uuid4().hex[:8]}."
    tree_agent(agent)
    settings = make_settings(
        clean_db,
        events={"broker_url": AMQP_URL, "name_prefix": prefix},
        routing={"agent_service_url": agent.url, **FAST},
    )
    svc, lifespan = await start_service(settings)
    admin = await admin_conn.channel()
    try:
        await eventually(lambda: svc.container.bus.consuming, timeout=15, what="the consumer attached")
        spy = await tap(admin, prefix)
        exchanges = {
            name: await admin.get_exchange(prefix + name, ensure=True)
            for name in ("task.events", "qa.events")
        }

        async def publish(exchange: str, key: str, envelope: dict[str, Any]) -> None:
            message = aio_pika.Message(
                orjson.dumps(envelope),
                content_type="application/cloudevents+json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=envelope["id"],
            )
            await exchanges[exchange].publish(message, routing_key=key)

        async def run(task_id: str, art: str) -> None:
            await wait_for_status(svc, task_id, "running", timeout=15)
            await publish("task.events", "task.output.created", output_event(task_id, art=art))
            await wait_for_status(svc, task_id, "validating", timeout=15)
            validated = cloud_event("task.validated", {"task_id": task_id, "confidence": 0.9}, source="/qa")
            await publish("qa.events", "task.validated", validated)
            await wait_for_status(svc, task_id, "completed", timeout=15)

        root = (await submit(svc, description=ROOT, options={"decompose": True}))["task_id"]
        ids = {name: str(n["task_id"]) for name, n in (await planned_tree(svc, root, 7)).items()}
        for name in LEAVES:
            await run(ids[name], f"art-{name}")
        await wait_for_status(svc, root, "completed", timeout=15)

        completed: list[str] = []

        async def parents_announced() -> bool:
            while (m := await spy.get(fail=False, no_ack=True)) is not None:
                if m.routing_key == "task.completed":
                    completed.append(orjson.loads(m.body)["subject"])
            return {ids["api"], ids["ui"], root} <= set(completed)

        await eventually(parents_announced, timeout=15, what="the parents' task.completed on the broker")
        order = [t for t in completed if t in (ids["api"], ids["ui"], root)]
        assert order == [ids["api"], ids["ui"], root]
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)
        await admin_conn.close()
        await delete_topology(prefix)
