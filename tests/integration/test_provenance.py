"""The provenance store on SQLite and PostgreSQL: listings with keyset pagination, the graph
(lineage, impact, root cause) on diamonds, long chains and cycles, taint and its suspect
cascade (events stored and published), clear-suspect, consistency, checkpoints, and both
rollback forms over the bus and the HTTP ingress."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
import yaml

from orchestration_service.db.tables import provenance_records, task_dependencies, tasks
from orchestration_service.domain.errors import NotFound
from orchestration_service.repositories.ports import Storage
from orchestration_service.repositories.provenance import (
    Edge,
    ProvenanceFilter,
    ProvenanceRecord,
    RecordSeed,
    TaintEventFilter,
)
from orchestration_service.services.lifecycle import utcnow
from tests.conftest import Service
from tests.contract.test_asyncapi import DOCUMENT, Contract
from tests.integration.test_event_lifecycle import Harness, cloud_event, output_event
from tests.integration.test_tasks_api import submit, wait_for_status

API = "/api/v1"
CE = {"content-type": "application/cloudevents+json"}


@dataclass
class Rec:
    label: str
    project: str = "proj-a"
    inputs: list[str] = field(default_factory=list)  # labels of the records whose artifact it uses
    artifacts: int = 1
    created_at: datetime | None = None
    columns: dict[str, Any] = field(default_factory=dict)


class Graph:
    """Records seeded straight into the store, named by label."""

    def __init__(self) -> None:
        self.ids: dict[str, uuid.UUID] = {}
        self.arts: dict[str, list[str]] = {}

    def id(self, label: str) -> str:
        return str(self.ids[label])

    def art(self, label: str) -> str:
        return self.arts[label][0]

    async def add(self, db: Storage, records: list[Rec], *, extra_edges: list[tuple[str, str]] = ()) -> None:
        base = utcnow() - timedelta(days=1)
        rows = []
        for i, r in enumerate(records):
            rid = uuid.uuid4()
            self.ids[r.label] = rid
            self.arts[r.label] = [f"art-{r.label}-{j}" for j in range(r.artifacts)]
            rows.append(
                {
                    "id": rid,
                    "task_id": f"task-{r.label}",
                    "project_id": r.project,
                    "status": "completed",
                    "created_at": r.created_at or base + timedelta(seconds=len(self.ids) * 10 + i),
                    "verification_status": "passed",
                    "outputs": [
                        {"artifact_id": a, "type": "code", "location": f"{a}.py"} for a in self.arts[r.label]
                    ],
                    "inputs": [
                        {"artifact_id": self.art(x), "relationship": "consumed", "version_at_consumption": ""}
                        for x in r.inputs
                    ],
                    "inputs_consumed": [self.art(x) for x in r.inputs],
                    **r.columns,
                }
            )
        async with db.transaction() as uow:
            repo = uow.provenance
            for row in rows:
                await repo.insert(ProvenanceRecord(**row))
                await repo.add_artifacts(
                    row["project_id"], row["id"], [o["artifact_id"] for o in row["outputs"]]
                )
            edges = [
                {
                    "artifact_id": self.ids[r.label],
                    "depends_on": self.ids[x],
                    "dependency_type": "consumed",
                    "via_artifact_id": self.art(x),
                }
                for r in records
                for x in r.inputs
            ]
            # Bad data: edges the inputs do not explain (cycles).
            edges += [
                {
                    "artifact_id": self.ids[a],
                    "depends_on": self.ids[b],
                    "dependency_type": "referenced",
                    "via_artifact_id": self.art(b),
                }
                for a, b in extra_edges
            ]
            await repo.add_dependencies([Edge(**e) for e in edges])


@pytest.fixture
async def h(service: Service) -> Harness:
    return Harness(service)


async def get(svc: Service, path: str, **params: Any) -> Any:
    r = await svc.client.get(API + path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


async def record(svc: Service, rid: str) -> dict[str, Any]:
    doc: dict[str, Any] = await get(svc, f"/provenance/{rid}")
    return doc


def depths(items: list[dict[str, Any]], g: Graph) -> dict[str, int]:
    labels = {str(v): k for k, v in g.ids.items()}
    found = [labels[i["id"]] for i in items]
    assert len(found) == len(set(found)), f"duplicates: {found}"
    return {labels[i["id"]]: i["depth"] for i in items}


def diamond() -> list[Rec]:
    """a -> b, a -> c, (b, c) -> d, d -> e; f stands alone."""
    return [
        Rec("a"),
        Rec("b", inputs=["a"]),
        Rec("c", inputs=["a"]),
        Rec("d", inputs=["b", "c"], artifacts=2),
        Rec("e", inputs=["d"]),
        Rec("f"),
    ]


# -- listings ----------------------------------------------------------------------------------
async def test_list_filters_newest_first_and_cursor_pages(service: Service) -> None:
    g = Graph()
    recs = [
        Rec(
            f"r{i}",
            project="proj-a" if i % 3 else "proj-b",
            columns={
                "model_used": "gemma3:12b" if i % 2 else "qwen",
                "worker_id": f"worker-{i % 4}",
                "tier": "small" if i < 10 else "large",
                "domain": "code-general",
                "verification_status": "failed" if i == 7 else "passed",
                "is_tainted": i == 5,
                "is_suspect": i in (6, 8),
            },
        )
        for i in range(25)
    ]
    await g.add(service.container.storage, recs)
    everything = await get(service, "/provenance", limit=500)
    assert everything["total"] == 25 and everything["next_cursor"] is None
    times = [i["created_at"] for i in everything["items"]]
    assert times == sorted(times, reverse=True)

    seen: list[str] = []
    page = await get(service, "/provenance", limit=7)
    while True:
        seen += [i["id"] for i in page["items"]]
        if page["next_cursor"] is None:
            break
        page = await get(service, "/provenance", limit=7, cursor=page["next_cursor"])
    assert seen == [i["id"] for i in everything["items"]]

    async def ids(**params: Any) -> set[str]:
        return {i["id"] for i in (await get(service, "/provenance", limit=500, **params))["items"]}

    assert await ids(project_id="proj-b") == {g.id(f"r{i}") for i in range(0, 25, 3)}
    assert await ids(task_id="task-r4") == {g.id("r4")}
    assert await ids(artifact_id="art-r9-0") == {g.id("r9")}
    assert await ids(verification_status="failed") == {g.id("r7")}
    assert await ids(is_tainted=True) == {g.id("r5")}
    assert await ids(is_suspect=True) == {g.id("r6"), g.id("r8")}
    assert len(await ids(is_suspect=False)) == 23
    assert await ids(model_used="qwen", worker_id="worker-0") == {g.id(f"r{i}") for i in range(0, 25, 4)}
    assert len(await ids(tier="large")) == 15 and len(await ids(domain="code-general")) == 25
    middle = everything["items"][10]["created_at"]
    assert len(await ids(created_after=middle)) == 11  # inclusive
    assert len(await ids(created_before=middle)) == 14  # exclusive
    assert (await get(service, "/provenance", limit=5, offset=20))["items"] == everything["items"][20:]

    for params in ({"cursor": "!!"}, {"cursor": "bm9wZQ"}, {"offset": 10_001}):
        r = await service.client.get(f"{API}/provenance", params=params)
        assert r.status_code == 422, (params, r.text)
    cursor = page_cursor = (await get(service, "/provenance", limit=3))["next_cursor"]
    assert page_cursor
    r = await service.client.get(f"{API}/provenance", params={"cursor": cursor, "offset": 3})
    assert r.status_code == 422


async def test_get_by_id_by_artifact_and_project_scope(service: Service) -> None:
    g = Graph()
    await g.add(
        service.container.storage, [Rec("x", project="proj-x", artifacts=2), Rec("y", project="proj-y")]
    )
    assert (await record(service, g.id("x")))["project_id"] == "proj-x"
    assert (await get(service, "/provenance/by-artifact/art-x-1"))["id"] == g.id("x")
    for path in (f"/provenance/{uuid.uuid4()}", "/provenance/not-a-uuid", "/provenance/by-artifact/nope"):
        r = await service.client.get(API + path)
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"

    # The services answer another project's record exactly as an unknown one.
    queries = service.container.provenance.queries
    assert (await queries.get(g.ids["x"], project_ids=["proj-x"])).id == g.ids["x"]
    unknown = str(uuid.uuid4())
    for call in (
        lambda: queries.get(g.ids["x"], project_ids=["proj-y"]),
        lambda: queries.by_artifact("art-x-0", project_ids=["proj-y"]),
        lambda: queries.lineage(g.ids["x"], project_ids=["proj-y"]),
        lambda: queries.impact(g.ids["x"], project_ids=["proj-y"]),
        lambda: queries.root_cause(g.ids["x"], project_ids=["proj-y"]),
        lambda: queries.consistency("proj-x", project_ids=["proj-y"]),
        lambda: service.container.provenance.cascade.taint(
            g.ids["x"], reason="r", tainted_by="t", project_ids=[]
        ),
    ):
        with pytest.raises(NotFound) as scoped:
            await call()
        assert "does not exist" in str(scoped.value) or "no provenance" in str(scoped.value)
    with pytest.raises(NotFound) as missing:
        await queries.get(unknown, project_ids=["proj-y"])
    assert str(missing.value) == f"provenance record {unknown} does not exist"
    page = await queries.find(ProvenanceFilter(project_ids=["proj-y"]), limit=10)
    assert [r.id for r in page.rows] == [g.ids["y"]] and page.total == 1
    events = await queries.taint_events(TaintEventFilter(project_ids=["proj-y"]), limit=10)
    assert events.total == 0


# -- the graph ---------------------------------------------------------------------------------
async def test_lineage_and_impact_on_a_diamond(service: Service) -> None:
    g = Graph()
    await g.add(service.container.storage, diamond())
    lineage = await get(service, f"/provenance/{g.id('e')}/lineage")
    assert depths(lineage["items"], g) == {"d": 1, "b": 2, "c": 2, "a": 3}
    assert lineage["total"] == 4 and lineage["max_depth"] == 3 and lineage["truncated"] is False
    impact = await get(service, f"/provenance/{g.id('a')}/impact")
    assert depths(impact["items"], g) == {"b": 1, "c": 1, "d": 2, "e": 3}
    assert impact["artifact_id"] == "art-a-0" and impact["total_affected"] == 4
    assert sorted(impact["direct_dependents"]) == ["art-b-0", "art-c-0"]
    assert sorted(impact["transitive_dependents"]) == ["art-d-0", "art-d-1", "art-e-0"]
    assert impact["tasks_in_flight"] == []
    alone = await get(service, f"/provenance/{g.id('f')}/impact")
    assert alone["items"] == [] and alone["total_affected"] == 0
    shallow = await get(service, f"/provenance/{g.id('a')}/impact", max_depth=1)
    assert depths(shallow["items"], g) == {"b": 1, "c": 1} and shallow["truncated"] is True
    limited = await get(service, f"/provenance/{g.id('a')}/impact", limit=2)
    assert len(limited["items"]) == 2 and limited["total_affected"] == 4


async def test_long_chain_depths_and_depth_limit(service: Service) -> None:
    g = Graph()
    await g.add(
        service.container.storage, [Rec("c0"), *(Rec(f"c{i}", inputs=[f"c{i - 1}"]) for i in range(1, 80))]
    )
    full = await get(service, f"/provenance/{g.id('c79')}/lineage", max_depth=200)
    assert depths(full["items"], g) == {f"c{i}": 79 - i for i in range(79)}
    assert full["truncated"] is False and full["max_depth"] == 79
    cut = await get(service, f"/provenance/{g.id('c79')}/lineage")  # default 50
    assert len(cut["items"]) == 50 and cut["truncated"] is True and cut["depth_limit"] == 50
    exact = await get(service, f"/provenance/{g.id('c79')}/lineage", max_depth=79)
    assert exact["truncated"] is False and len(exact["items"]) == 79
    impact = await get(service, f"/provenance/{g.id('c0')}/impact", max_depth=1000)
    assert impact["total_affected"] == 79 and impact["max_depth"] == 79
    r = await service.client.get(f"{API}/provenance/{g.id('c0')}/impact", params={"max_depth": 0})
    assert r.status_code == 422


async def test_truncated_only_when_a_record_at_the_limit_has_an_unreached_neighbour(
    service: Service,
) -> None:
    """a <- b <- c, and c also uses a directly: at depth 1 from c, b's only neighbour (a) was
    already reached, so nothing was cut. d uses c, and e (another project) uses d."""
    g = Graph()
    await g.add(
        service.container.storage,
        [
            Rec("a"),
            Rec("b", inputs=["a"]),
            Rec("c", inputs=["a", "b"]),
            Rec("d", inputs=["c"]),
            Rec("e", project="proj-b", inputs=["d"]),
        ],
    )
    one = await get(service, f"/provenance/{g.id('c')}/lineage", max_depth=1)
    assert depths(one["items"], g) == {"a": 1, "b": 1} and one["truncated"] is False
    cut = await get(service, f"/provenance/{g.id('d')}/lineage", max_depth=1)
    assert depths(cut["items"], g) == {"c": 1} and cut["truncated"] is True
    assert cut["max_depth"] == 1 and cut["artifact_ids"] == ["art-d-0"]
    down = await get(service, f"/provenance/{g.id('b')}/impact", max_depth=1)
    assert depths(down["items"], g) == {"c": 1} and down["truncated"] is True
    assert down["artifact_id"] == "art-b-0" and down["direct_dependents"] == ["art-c-0"]
    # The walk is unscoped, the answer scoped: e is cut off and not listed, but counts as cut.
    scoped = await service.container.provenance.queries.impact(
        g.ids["c"], max_depth=1, project_ids=["proj-a"]
    )
    assert [i["id"] for i in scoped["items"]] == [g.ids["d"]] and scoped["truncated"] is True
    whole = await service.container.provenance.queries.impact(g.ids["c"], max_depth=2, project_ids=["proj-a"])
    assert whole["total_affected"] == 1 and whole["max_depth"] == 1 and whole["truncated"] is False
    assert whole["in_flight_by_project"] == {}
    with pytest.raises(NotFound):
        await service.container.provenance.queries.lineage(g.ids["e"], project_ids=["proj-a"])


async def test_cycles_in_bad_data_terminate(service: Service) -> None:
    g = Graph()
    # p -> q -> r, plus r -> p (a cycle), and s depending on r.
    await g.add(
        service.container.storage,
        [Rec("p"), Rec("q", inputs=["p"]), Rec("r", inputs=["q"]), Rec("s", inputs=["r"])],
        extra_edges=[("p", "r")],
    )
    impact = await get(service, f"/provenance/{g.id('p')}/impact", max_depth=1000)
    assert depths(impact["items"], g) == {"q": 1, "r": 2, "s": 3}
    lineage = await get(service, f"/provenance/{g.id('p')}/lineage", max_depth=1000)
    assert depths(lineage["items"], g) == {"r": 1, "q": 2}
    cause = await get(service, f"/provenance/{g.id('s')}/root-cause")
    assert cause["root_cause"] is None and cause["path"] == []
    result = (await service.client.post(f"{API}/provenance/{g.id('q')}/taint", json={"reason": "bad"})).json()
    assert result["tainted_count"] == 1 and result["suspect_count"] == 3  # r, s and p (around the cycle)
    assert (await record(service, g.id("p")))["is_suspect"] is True
    assert (await record(service, g.id("q")))["is_suspect"] is False


def ladder_and_diamonds() -> list[Rec]:
    """A hub ``h`` and a chain ``l1..l30``, each link using the previous one and ``h`` (``l<i>``
    is one edge from ``h`` and also ``i`` edges along the chain); then a stack of 12 diamonds
    ``s<i> -> (x<i>, y<i>) -> s<i+1>``: 4,096 paths of the same length from ``s0`` to ``s12``."""
    recs = [Rec("h"), Rec("l1", inputs=["h"])]
    recs += [Rec(f"l{i}", inputs=[f"l{i - 1}", "h"]) for i in range(2, 31)]
    recs.append(Rec("s0"))
    for i in range(12):
        recs += [Rec(f"x{i}", inputs=[f"s{i}"]), Rec(f"y{i}", inputs=[f"s{i}"])]
        recs.append(Rec(f"s{i + 1}", inputs=[f"x{i}", f"y{i}"]))
    return recs


async def test_diamonds_and_ladders_walk_each_record_once_at_its_shortest_depth(service: Service) -> None:
    g = Graph()
    # Bad data: s0 also depends on s12, closing a cycle through every diamond.
    await g.add(service.container.storage, ladder_and_diamonds(), extra_edges=[("s0", "s12")])
    impact = await get(service, f"/provenance/{g.id('h')}/impact", max_depth=1000)
    assert depths(impact["items"], g) == {f"l{i}": 1 for i in range(1, 31)}
    assert impact["total_affected"] == 30 and impact["max_depth"] == 1 and impact["truncated"] is False
    lineage = await get(service, f"/provenance/{g.id('l30')}/lineage", max_depth=1000)
    assert depths(lineage["items"], g) == {"h": 1, **{f"l{i}": 30 - i for i in range(1, 30)}}

    stack = {f"s{i}": 2 * i for i in range(1, 13)}
    stack |= {f"{side}{i}": 2 * i + 1 for i in range(12) for side in "xy"}
    impact = await get(service, f"/provenance/{g.id('s0')}/impact", max_depth=1000)
    assert depths(impact["items"], g) == stack  # s0 itself is not met again around the cycle
    assert impact["total_affected"] == 36 and impact["max_depth"] == 24 and impact["truncated"] is False
    assert [i["depth"] for i in impact["items"]] == sorted(i["depth"] for i in impact["items"])
    cut = await get(service, f"/provenance/{g.id('s0')}/impact", max_depth=5)
    assert depths(cut["items"], g) == {k: v for k, v in stack.items() if v <= 5} and cut["truncated"] is True
    lineage = await get(service, f"/provenance/{g.id('s12')}/lineage", max_depth=1000)
    assert depths(lineage["items"], g) == {
        **{f"s{i}": 24 - 2 * i for i in range(12)},
        **{f"{side}{i}": 23 - 2 * i for i in range(12) for side in "xy"},
    }

    result = (
        await service.client.post(f"{API}/provenance/{g.id('s0')}/taint", json={"reason": "bad"})
    ).json()
    assert result["suspect_count"] == 36 and result["max_depth"] == 24
    trail = await get(service, "/provenance/taint-events", cascade_id=result["cascade_id"], limit=500)
    labels = {str(v): k for k, v in g.ids.items()}
    suspects = [
        (labels[e["provenance_id"]], e["cascade_depth"]) for e in trail["items"] if e["action"] == "suspect"
    ]
    assert sorted(suspects) == sorted(stack.items())  # each record once, at its distance


async def test_cascade_targets_name_the_nearest_seed(service: Service) -> None:
    """Several seeds at once (a project rollback): each record downstream once, with the seed it
    is nearest to (the smaller id of a tie), never re-entering a seed."""
    g = Graph()
    db = service.container.storage
    await g.add(
        db,
        [
            Rec("b"),
            Rec("a", inputs=["b"]),  # a seed downstream of the other one
            Rec("both", inputs=["a", "b"]),
            Rec("after", inputs=["both"]),
            Rec("via_b", inputs=["b"]),
            Rec("near_a", inputs=["a", "via_b"]),
        ],
    )
    tie = min(g.ids["a"], g.ids["b"])
    async with db.read() as uow:
        repo = uow.taint
        found = await repo.cascade_targets(RecordSeed((g.ids["a"], g.ids["b"])), 1000, "proj-a")
        # One seed given twice: the several-seeds walk (with sources) from one record, which
        # must answer as the plain walk from it.
        single = await repo.cascade_targets(RecordSeed((g.ids["b"], g.ids["b"])), 1000, "proj-a")
        only = await repo.cascade_targets(RecordSeed((g.ids["b"],)), 1000, "proj-a")
    labels = {v: k for k, v in g.ids.items()}
    assert {labels[r.id]: (r.depth, r.source) for r in found} == {
        "both": (1, tie),
        "after": (2, tie),
        "via_b": (1, g.ids["b"]),
        "near_a": (1, g.ids["a"]),
    }
    assert single == only
    assert {labels[r.id]: r.depth for r in only} == {
        "a": 1,
        "via_b": 1,
        "both": 1,
        "after": 2,
        "near_a": 2,
    }


async def test_root_cause_follows_the_path_to_the_earliest_tainted_ancestor(service: Service) -> None:
    g = Graph()
    await g.add(service.container.storage, [*diamond(), Rec("g", inputs=["e"])])
    db = service.container.db
    async with db.transaction() as tx:
        for label in ("a", "d"):
            await tx.conn.execute(
                provenance_records.update()
                .where(provenance_records.c.id == g.ids[label])
                .values(is_tainted=True)
            )
    cause = await get(service, f"/provenance/{g.id('g')}/root-cause")
    assert cause["failed_artifact_id"] == "art-g-0"
    assert cause["immediate_cause"] == "art-d-0" and cause["immediate_cause_provenance_id"] == g.id("d")
    assert cause["root_cause"] == "art-a-0" and cause["root_cause_provenance_id"] == g.id("a")
    assert cause["depth"] == 4 and len(cause["path"]) == 5
    assert cause["path"][0] == "art-a-0" and cause["path"][2] in ("art-d-0", "art-d-1")
    assert cause["path"][1] in ("art-b-0", "art-c-0") and cause["path"][3:] == ["art-e-0", "art-g-0"]
    labels = {str(v): k for k, v in g.ids.items()}
    assert [labels[i] for i in cause["path_provenance_ids"]][::2] == ["a", "d", "g"]
    itself = await get(service, f"/provenance/{g.id('a')}/root-cause")
    assert itself["root_cause"] == "art-a-0" and itself["depth"] == 0 and itself["path"] == ["art-a-0"]


# -- taint -------------------------------------------------------------------------------------
async def test_taint_cascade_marks_stores_and_publishes_in_one_go(h: Harness) -> None:
    svc = h.svc
    g = Graph()
    await g.add(svc.container.storage, [*diamond(), Rec("o", project="proj-other", inputs=["e"])])
    r = await svc.client.post(
        f"{API}/provenance/{g.id('b')}/taint",
        json={"reason": "security vulnerability", "tainted_by": "alice"},
    )
    assert r.status_code == 200, r.text
    result = r.json()
    # d and e; not o: a cascade stays in its project (an edge into another project's record
    # is legacy data from before artifact ids were scoped).
    assert result["tainted_count"] == 1 and result["suspect_count"] == 2
    assert (
        result["max_depth"] == 2 and result["artifact_ids"] == ["art-b-0"] and not result["already_applied"]
    )
    cascade = result["cascade_id"]

    b = await record(svc, g.id("b"))
    assert b["is_tainted"] and b["verification_status"] == "tainted" and b["tainted_by"] == "alice"
    assert b["tainted_reason"] == "security vulnerability" and b["tainted_at"]
    for label in ("d", "e"):
        doc = await record(svc, g.id(label))
        assert doc["is_suspect"] and doc["suspect_source"] == "art-b-0" and doc["suspect_since"], label
        assert not doc["is_tainted"] and doc["verification_status"] == "passed"
    for label in ("a", "c", "f", "o"):
        doc = await record(svc, g.id(label))
        assert not doc["is_suspect"] and not doc["is_tainted"], label

    trail = await get(svc, "/provenance/taint-events", cascade_id=cascade)
    events = {(e["artifact_id"], e["action"], e["cascade_depth"]) for e in trail["items"]}
    assert events == {
        ("art-b-0", "taint", 0),
        ("art-d-0", "suspect", 1),
        ("art-d-1", "suspect", 1),
        ("art-e-0", "suspect", 2),
    }
    assert trail["total"] == 4 and all(
        e["source_artifact_id"] == "art-b-0" for e in trail["items"][:4] if e["action"] == "suspect"
    )
    assert {e["project_id"] for e in trail["items"]} == {"proj-a"}

    tainted = await h.published("artifact.tainted", "art-b-0")
    assert tainted[0]["data"] == {
        "artifact_id": "art-b-0",
        "provenance_id": g.id("b"),
        "project_id": "proj-a",
        "reason": "security vulnerability",
        "cascade_id": cascade,
        "source_artifact_id": None,
        "cascade_depth": 0,
    }
    suspect = await h.published("artifact.suspect", "art-e-0")
    assert suspect[0]["data"]["source_artifact_id"] == "art-b-0" and suspect[0]["data"]["cascade_depth"] == 2
    published = [m for m in h.bus.published if m.routing_key.startswith("artifact.")]
    assert len(published) == 4
    contract = Contract(yaml.safe_load(DOCUMENT.read_text()))
    assert [p for m in published for p in contract.check_published(m)] == []

    # The same cascade id again: nothing changes, the first answer comes back.
    again = await svc.client.post(
        f"{API}/provenance/{g.id('b')}/taint", json={"reason": "again", "cascade_id": cascade}
    )
    assert again.json()["already_applied"] is True and again.json()["suspect_count"] == 2
    assert (await get(svc, "/provenance/taint-events", cascade_id=cascade))["total"] == 4
    assert (await record(svc, g.id("b")))["tainted_reason"] == "security vulnerability"

    for body in ({}, {"reason": ""}, {"reason": "x", "extra": 1}):
        bad = await svc.client.post(f"{API}/provenance/{g.id('b')}/taint", json=body)
        assert bad.status_code == 422, body
    missing = await svc.client.post(f"{API}/provenance/{uuid.uuid4()}/taint", json={"reason": "x"})
    assert missing.status_code == 404


async def _complete(h: Harness, art: str, inputs: list[str]) -> str:
    """A task run to completion through the bus, producing ``art`` from ``inputs``; its record id."""
    tid = await h.running_task()
    out = output_event(tid, art=art, inputs=[{"artifact_id": i} for i in inputs])
    await h.send(out)
    await h.send(
        cloud_event("task.validated", {"task_id": tid, "confidence": 0.9}, source="/qa-service"),
        "task.validated",
        "qa.events",
    )
    doc = await wait_for_status(h.svc, tid, "completed")
    return str(doc["provenance_id"])


async def test_a_record_that_consumes_a_tainted_artifact_is_suspect_from_the_start(h: Harness) -> None:
    svc = h.svc
    a = await _complete(h, "art-a", [])
    r = await svc.client.post(f"{API}/provenance/{a}/taint", json={"reason": "bad model"})
    assert r.status_code == 200, r.text
    cascade = r.json()["cascade_id"]

    # Made later, from a's tainted artifact: suspect, in a's cascade, one step from it.
    b = await _complete(h, "art-b", ["art-a"])
    doc = await record(svc, b)
    assert doc["is_suspect"] and doc["suspect_source"] == "art-a" and not doc["is_tainted"]
    # And from b's (suspect) artifact: suspect too, with the same source, one step further.
    c = await _complete(h, "art-c", ["art-b"])
    doc = await record(svc, c)
    assert doc["is_suspect"] and doc["suspect_source"] == "art-a"
    trail = await get(svc, "/provenance/taint-events", cascade_id=cascade)
    entries = {
        (e["artifact_id"], e["action"], e["cascade_depth"], e["source_provenance_id"]) for e in trail["items"]
    }
    assert entries == {("art-a", "taint", 0, None), ("art-b", "suspect", 1, a), ("art-c", "suspect", 2, a)}
    suspect = (await h.published("artifact.suspect", "art-c"))[0]
    assert suspect["data"]["source_artifact_id"] == "art-a" and suspect["data"]["cascade_id"] == cascade
    contract = Contract(yaml.safe_load(DOCUMENT.read_text()))
    inherited = [m for m in h.bus.published if m.routing_key == "artifact.suspect"]
    assert len(inherited) == 2 and [p for m in inherited for p in contract.check_published(m)] == []

    # From a clean artifact: nothing inherited.
    clean = await _complete(h, "art-d", [])
    d = await _complete(h, "art-e", ["art-d"])
    assert not (await record(svc, d))["is_suspect"]
    assert not (await record(svc, clean))["is_suspect"]


async def test_clear_suspect_and_the_audit_trail(service: Service) -> None:
    g = Graph()
    await g.add(service.container.storage, [Rec("a"), Rec("b", inputs=["a"]), Rec("c", inputs=["b"])])
    cascade = (
        await service.client.post(
            f"{API}/provenance/{g.id('a')}/taint", json={"reason": "bad", "cascade_id": "casc-9"}
        )
    ).json()["cascade_id"]
    assert cascade == "casc-9"
    r = await service.client.post(
        f"{API}/provenance/{g.id('b')}/clear-suspect",
        json={"reason": "revalidated by QA", "cleared_by": "qa"},
    )
    assert r.status_code == 200 and r.json()["cleared"] is True and r.json()["cascade_id"] == "casc-9"
    b = await record(service, g.id("b"))
    assert not b["is_suspect"] and b["suspect_since"] is None and b["suspect_source"] is None
    again = (await service.client.post(f"{API}/provenance/{g.id('b')}/clear-suspect")).json()
    assert again["cleared"] is False
    trail = await get(service, "/provenance/taint-events", cascade_id="casc-9")
    assert [(e["action"], e["artifact_id"]) for e in trail["items"] if e["action"] == "clear"] == [
        ("clear", "art-b-0")
    ]
    clear = next(e for e in trail["items"] if e["action"] == "clear")
    assert clear["cascade_depth"] == 1 and clear["source_artifact_id"] == "art-a-0"
    assert "revalidated by QA" in clear["reason"] and "qa" in clear["reason"]
    # Paging the trail with a cursor, and its filters.
    seen, page = [], await get(service, "/provenance/taint-events", limit=1)
    while True:
        seen += [e["id"] for e in page["items"]]
        if not page["next_cursor"]:
            break
        page = await get(service, "/provenance/taint-events", limit=1, cursor=page["next_cursor"])
    assert len(seen) == len(set(seen)) == 4
    assert (await get(service, "/provenance/taint-events", action="clear"))["total"] == 1
    assert (await get(service, "/provenance/taint-events", provenance_id=g.id("c")))["total"] == 1
    assert (await get(service, "/provenance/taint-events", project_id="proj-a"))["total"] == 4
    assert (await get(service, "/provenance/taint-events", project_id="nope"))["total"] == 0


# -- projects ----------------------------------------------------------------------------------
async def test_consistency_report_and_recommended_action(service: Service) -> None:
    g = Graph()
    await g.add(service.container.storage, [*(Rec(f"n{i}") for i in range(1, 10)), Rec("n0", inputs=["n1"])])
    async with service.container.storage.transaction() as uow:
        # An input nobody produced: an orphaned artifact.
        await uow.provenance.add_unresolved("proj-a", g.ids["n0"], [("art-gone", "consumed")])
    report = await get(service, "/projects/proj-a/consistency")
    assert report == {
        "project_id": "proj-a",
        "total_records": 10,
        "tainted_count": 0,
        "suspect_count": 0,
        "pending_revalidation": 0,
        "orphaned_artifacts": 1,
        "affected_ratio": 0.0,
        "recommended_action": "continue",
    }
    await service.client.post(f"{API}/provenance/{g.id('n1')}/taint", json={"reason": "bad"})
    report = await get(service, "/projects/proj-a/consistency")
    assert (
        report["tainted_count"] == 1 and report["suspect_count"] == 1 and report["pending_revalidation"] == 1
    )
    assert report["recommended_action"] == "pause" and report["affected_ratio"] == 0.2
    await service.client.post(f"{API}/provenance/{g.id('n2')}/taint", json={"reason": "bad"})
    report = await get(service, "/projects/proj-a/consistency")
    assert report["affected_ratio"] == 0.3 and report["recommended_action"] == "rollback"
    r = await service.client.get(f"{API}/projects/unknown/consistency")
    assert r.status_code == 404


async def test_checkpoints_record_the_project_state(service: Service) -> None:
    g = Graph()
    await g.add(
        service.container.storage, [Rec("a", artifacts=2), Rec("b", inputs=["a"]), Rec("z", project="proj-z")]
    )
    r = await service.client.post(
        f"{API}/projects/proj-a/checkpoints", json={"git_ref": "abc123", "description": "before refactor"}
    )
    assert r.status_code == 201, r.text
    cp = r.json()
    assert cp["provenance_count"] == 2 and cp["artifact_count"] == 3 and cp["is_valid"]
    assert (
        cp["last_provenance_id"] == g.id("b") and cp["last_task_id"] == "task-b" and cp["trigger"] == "manual"
    )
    second = (
        await service.client.post(f"{API}/projects/proj-a/checkpoints", json={"trigger": "milestone"})
    ).json()
    listed = await get(service, "/projects/proj-a/checkpoints")
    assert [c["id"] for c in listed["items"]] == [second["id"], cp["id"]] and listed["total"] == 2
    assert (await get(service, "/projects/nothing/checkpoints"))["items"] == []
    bad = await service.client.post(f"{API}/projects/proj-a/checkpoints", json={"trigger": "weekly"})
    assert bad.status_code == 422


# -- impact: tasks in flight -------------------------------------------------------------------
async def test_impact_lists_tasks_waiting_on_affected_records(service: Service) -> None:
    g = Graph()
    await g.add(service.container.storage, [Rec("a"), Rec("b", inputs=["a"])])
    now = utcnow()
    base = {
        "project_id": "proj-a",
        "description": "x",
        "priority": "normal",
        "priority_rank": 1,
        "options": {},
        "max_attempts": 1,
        "timeout_seconds": 600,
        "created_at": now,
        "updated_at": now,
        "routed_at": now,
        "provenance_id": None,
    }
    producer, waiting, later, unrelated = (uuid.uuid4() for _ in range(4))
    async with service.container.db.transaction() as tx:
        await tx.conn.execute(
            tasks.insert(),
            [
                {**base, "id": producer, "status": "completed", "provenance_id": g.ids["b"]},
                {**base, "id": waiting, "status": "decomposing"},
                {**base, "id": later, "status": "decomposing"},
                {**base, "id": unrelated, "status": "decomposing"},
            ],
        )
        await tx.conn.execute(
            task_dependencies.insert(),
            [{"task_id": waiting, "depends_on_id": producer}, {"task_id": later, "depends_on_id": waiting}],
        )
    impact = await get(service, f"/provenance/{g.id('a')}/impact")
    assert {t["task_id"] for t in impact["tasks_in_flight"]} == {str(waiting), str(later)}
    assert impact["in_flight_by_project"] == {"proj-a": 3}
    scoped = await service.container.provenance.queries.impact(g.ids["a"], project_ids=["proj-a"])
    assert len(scoped["tasks_in_flight"]) == 2


# -- rollback ----------------------------------------------------------------------------------
def rollback(data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return cloud_event("rollback.requested", data, source="/cascade-service", **extra)


async def send_rollback(h: Harness, envelope: dict[str, Any]) -> None:
    await h.send(envelope, "rollback.requested", "cascade.events")


async def test_targeted_rollback_over_the_bus_is_idempotent(h: Harness) -> None:
    svc = h.svc
    g = Graph()
    await g.add(svc.container.storage, diamond())
    event = rollback({"artifact_id": "art-c-0", "reason": "tainted upstream", "cascade_id": "casc-77"})
    await send_rollback(h, event)
    c = await record(svc, g.id("c"))
    assert (
        c["is_tainted"]
        and c["tainted_reason"] == "tainted upstream"
        and c["tainted_by"] == "/cascade-service"
    )
    assert (await record(svc, g.id("e")))["suspect_source"] == "art-c-0"
    trail = await get(svc, "/provenance/taint-events", cascade_id="casc-77")
    assert trail["total"] == 4  # c, d (two artifacts), e
    await h.published("artifact.tainted", "art-c-0")

    await send_rollback(h, event)  # the same event id
    await send_rollback(h, rollback({"provenance_id": g.id("c"), "cascade_id": "casc-77"}))  # same cascade
    assert (await get(svc, "/provenance/taint-events", cascade_id="casc-77"))["total"] == 4
    assert (await get(svc, "/provenance/taint-events"))["total"] == 4
    assert list(h.bus.dead_letters) == []

    # Unknown ids, or an artifact that record did not produce: dead-lettered, nothing stored.
    for data in (
        {"artifact_id": "art-nope"},
        {"provenance_id": str(uuid.uuid4())},
        {"provenance_id": "not-a-uuid"},
        {"provenance_id": g.id("a"), "artifact_id": "art-b-0"},
    ):
        await send_rollback(h, rollback(data))
    reasons = [reason or "" for _, reason in h.bus.dead_letters]
    assert len(reasons) == 4 and all(r.startswith("unknown-record") for r in reasons), reasons
    assert not (await record(svc, g.id("a")))["is_tainted"]


async def test_project_rollback_over_http_taints_cancels_and_invalidates(h: Harness) -> None:
    svc = h.svc
    g = Graph()
    before = utcnow() - timedelta(hours=1)
    await g.add(
        svc.container.storage,
        [Rec("old", project="proj-r", created_at=before), Rec("keep", project="proj-r", created_at=before)],
    )
    early = await h.running_task(project_id="proj-r")
    cp = (await svc.client.post(f"{API}/projects/proj-r/checkpoints", json={"git_ref": "v1"})).json()
    await g.add(
        svc.container.storage,
        [
            Rec("new1", project="proj-r", inputs=["old"], created_at=utcnow()),
            Rec("new2", project="proj-r", inputs=["new1"], created_at=utcnow()),
            Rec("outside", project="proj-s", inputs=["new2"], created_at=utcnow()),
        ],
    )
    late = await h.running_task(project_id="proj-r")
    pending = (await submit(svc, project_id="proj-r"))["task_id"]
    other_project = await h.running_task(project_id="proj-s")
    later_cp = (await svc.client.post(f"{API}/projects/proj-r/checkpoints")).json()

    data = {"project_id": "proj-r", "checkpoint_id": cp["id"], "reason": "bad release", "rollback_id": "rb-1"}
    r = await svc.client.post(f"{API}/events", content=orjson.dumps(rollback(data)), headers=CE)
    assert r.status_code == 202, r.text
    # "outside" (another project, linked by a legacy edge) is not reached: a rollback stays in its project.
    assert "2 tainted, 0 suspect" in r.json()["detail"] and "1 checkpoints invalidated" in r.json()["detail"]

    for label in ("new1", "new2"):
        doc = await record(svc, g.id(label))
        assert doc["is_tainted"] and doc["tainted_reason"] == "rolled_back", label
    assert not (await record(svc, g.id("outside")))["is_suspect"]
    for label in ("old", "keep"):
        assert not (await record(svc, g.id(label)))["is_tainted"], label
    await wait_for_status(svc, late, "cancelled")
    await wait_for_status(svc, pending, "cancelled")
    assert (await get(svc, f"/tasks/{early}"))["status"] == "running"
    assert (await get(svc, f"/tasks/{other_project}"))["status"] == "running"
    checkpoints = {c["id"]: c for c in (await get(svc, "/projects/proj-r/checkpoints"))["items"]}
    assert checkpoints[cp["id"]]["is_valid"] is True
    assert (
        checkpoints[later_cp["id"]]["is_valid"] is False
        and checkpoints[later_cp["id"]]["invalidated_by"] == "rb-1"
    )
    trail = await get(svc, "/provenance/taint-events", cascade_id="rb-1")
    assert {(e["action"], e["reason"]) for e in trail["items"] if e["action"] == "taint"} == {
        ("taint", "rolled_back")
    }
    assert trail["total"] == 2

    # The same rollback id again (another event id), and the same event again: no change.
    again = await svc.client.post(f"{API}/events", content=orjson.dumps(rollback(data)), headers=CE)
    assert again.status_code == 202 and "already applied" in again.json()["detail"]
    assert (await get(svc, "/provenance/taint-events"))["total"] == 2

    for bad in (
        {"project_id": "proj-r", "checkpoint_id": "cp-unknown"},
        {"project_id": "proj-other", "checkpoint_id": cp["id"]},
    ):
        r = await svc.client.post(f"{API}/events", content=orjson.dumps(rollback(bad)), headers=CE)
        assert r.status_code == 422 and r.json()["reason"] == "unknown-record", r.text
