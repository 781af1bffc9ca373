"""ProvenanceRepository (records, artifacts, dependencies, the graph walks and the task
queries of the impact answer) on both backends."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson

from orchestration_service.db.tables import task_dependencies, tasks
from orchestration_service.repositories.ports import Storage
from orchestration_service.repositories.provenance import Edge, ProvenanceFilter, ProvenanceRecord
from orchestration_service.repositories.storage import SqlStorage

BASE = datetime(2026, 1, 1, tzinfo=UTC)


def rec(label: str, n: int, *, project: str = "p", tainted: bool = False) -> ProvenanceRecord:
    return ProvenanceRecord(
        id=uuid.uuid4(),
        task_id=f"task-{label}",
        project_id=project,
        created_at=BASE + timedelta(minutes=n),
        verification_status="passed",
        is_tainted=tainted,
        model_used="m1" if n % 2 else "m2",
        confidence=Decimal("0.90"),
        outputs=[{"artifact_id": f"art-{label}", "type": "code"}],
        inputs=[],
    )


async def chain(
    storage: Storage, labels: str, *, tainted: str = "", project: str = "p"
) -> dict[str, ProvenanceRecord]:
    """Records in order, each depending on the previous one (``a`` ← ``b`` ← …)."""
    made = {label: rec(label, i, project=project, tainted=label in tainted) for i, label in enumerate(labels)}
    async with storage.transaction() as uow:
        for r in made.values():
            await uow.provenance.insert(r)
            await uow.provenance.add_artifacts(r.project_id, r.id, [f"art-{r.task_id[5:]}"])
        ordered = list(made.values())
        await uow.provenance.add_dependencies(
            [
                Edge(
                    artifact_id=b.id,
                    depends_on=a.id,
                    via_artifact_id=f"art-{a.task_id[5:]}",
                    dependency_type="consumed",
                )
                for a, b in itertools.pairwise(ordered)
            ]
        )
    return made


async def test_records_round_trip_and_listing(storage: Storage) -> None:
    r = await chain(storage, "abc")
    async with storage.read() as uow:
        got = await uow.provenance.get(r["a"].id)
        assert got == r["a"]
        assert await uow.provenance.get(uuid.uuid4()) is None
        summary = await uow.provenance.summary(r["b"].id)
        assert summary is not None and summary.task_id == "task-b" and summary.outputs == r["b"].outputs
        assert {x.id for x in await uow.provenance.get_many([r["a"].id, r["c"].id])} == {r["a"].id, r["c"].id}
        newest = await uow.provenance.find(ProvenanceFilter(project_ids=["p"]), limit=2)
        assert [x.task_id for x in newest] == ["task-c", "task-b"]
        after = await uow.provenance.find(ProvenanceFilter(), limit=5, after=(r["b"].created_at, r["b"].id))
        assert [x.task_id for x in after] == ["task-a"]
        assert [x.task_id for x in await uow.provenance.find(ProvenanceFilter(model_used="m1"), limit=5)] == [
            "task-b"
        ]
        assert [
            x.task_id for x in await uow.provenance.find(ProvenanceFilter(artifact_id="art-c"), limit=5)
        ] == ["task-c"]
        assert await uow.provenance.count(ProvenanceFilter()) == 3
        assert await uow.provenance.count(ProvenanceFilter(), cap=1) == 2  # counts no further than cap + 1
        assert await uow.provenance.count(ProvenanceFilter(project_ids=["other"])) == 0


async def test_get_for_update_reads_the_record(storage: Storage) -> None:
    r = await chain(storage, "a")
    async with storage.transaction() as uow:
        assert await uow.provenance.get(r["a"].id, for_update=True) == r["a"]


async def test_producers_artifact_projects_and_unresolved_inputs(storage: Storage) -> None:
    r = await chain(storage, "ab")
    await chain(storage, "x", project="q")
    async with storage.transaction() as uow:
        assert await uow.provenance.producers_of("p", ["art-a", "art-x", "nope"]) == {"art-a": r["a"].id}
        assert await uow.provenance.artifact_projects("art-x", None) == ["q"]
        assert await uow.provenance.artifact_projects("art-x", ["p"]) == []
        # A record that used an artifact nobody produced yet waits for its producer.
        await uow.provenance.add_unresolved("p", r["b"].id, [("art-later", "referenced")])
        await uow.provenance.add_unresolved("p", r["b"].id, [("art-later", "referenced")])  # once
        assert await uow.taint.orphaned_inputs("p") == 1
        producer = rec("later", 9)
        await uow.provenance.insert(producer)
        # Claimed: the new one (art-a keeps its first producer), and b now depends on it.
        assert await uow.provenance.claim_outputs("p", producer.id, ["art-later", "art-a", "art-later"]) == [
            "art-later"
        ]
        assert await uow.provenance.claim_outputs("p", producer.id, []) == []
        assert await uow.taint.orphaned_inputs("p") == 0
        assert (await uow.provenance.producers_of("p", ["art-a"]))["art-a"] == r["a"].id
        edges = await uow.provenance.edges_between([r["b"].id])
    assert {(e.depends_on, e.via_artifact_id) for e in edges} == {
        (r["a"].id, "art-a"),
        (producer.id, "art-later"),
    }


async def test_graph_walks_both_ways_with_depths_and_the_cut(storage: Storage) -> None:
    r = await chain(storage, "abcde")
    async with storage.read() as uow:
        down = await uow.provenance.graph(r["a"].id, "down", 10)
        cut = await uow.provenance.graph(r["a"].id, "down", 2)
        up = await uow.provenance.graph(r["e"].id, "up", 10, listed=1)
        missing = await uow.provenance.graph(uuid.uuid4(), "down", 10)
    assert [(n.task_id, n.depth) for n in down.nodes] == [(f"task-{x}", i) for i, x in enumerate("abcde")]
    assert not down.truncated
    assert [n.task_id for n in cut.nodes] == ["task-a", "task-b", "task-c"] and cut.truncated
    assert [n.task_id for n in up.nodes] == ["task-e", "task-d", "task-c", "task-b", "task-a"]
    # listed=1: the root and one more carry their outputs (JSON text), the rest do not.
    assert [n.outputs is not None for n in up.nodes] == [True, True, False, False, False]
    assert orjson.loads(up.nodes[1].outputs or "null") == r["d"].outputs
    assert (
        up.nodes[0].project_id == "p" and up.nodes[0].is_tainted is False and up.nodes[0].is_suspect is False
    )
    assert up.nodes[0].verification_status == "passed" and up.nodes[0].created_at == r["e"].created_at
    assert missing.nodes == [] and not missing.truncated


async def test_graph_meets_a_diamond_once_at_its_shortest_distance(storage: Storage) -> None:
    r = await chain(storage, "abcd")  # a ← b ← c ← d, and a shortcut a ← d
    async with storage.transaction() as uow:
        await uow.provenance.add_dependencies(
            [Edge(artifact_id=r["d"].id, depends_on=r["a"].id, via_artifact_id="art-a")]
        )
    async with storage.read() as uow:
        walk = await uow.provenance.graph(r["a"].id, "down", 10)
    assert [(n.task_id, n.depth) for n in walk.nodes] == [
        ("task-a", 0),
        ("task-b", 1),
        ("task-d", 1),
        ("task-c", 2),
    ]


async def test_reached_tainted_stays_in_the_project_and_reads_only_the_tainted(storage: Storage) -> None:
    r = await chain(storage, "abc", tainted="a")
    async with storage.read() as uow:
        reached = await uow.provenance.reached_tainted(r["c"].id, "up", 10, "p")
        elsewhere = await uow.provenance.reached_tainted(r["c"].id, "up", 10, "q")
    assert [(x.id, x.depth) for x in reached] == [(r["c"].id, 0), (r["b"].id, 1), (r["a"].id, 2)]
    assert [x.is_tainted for x in reached] == [None, None, True]
    assert reached[2].task_id == "task-a" and reached[2].outputs == r["a"].outputs
    assert [x.id for x in elsewhere] == [r["c"].id]  # the walk passes only through project q


async def test_waiting_tasks_and_in_flight_by_project(storage: Storage) -> None:
    r = await chain(storage, "a")
    ids = [uuid.uuid4() for _ in range(4)]  # producer ← waiting ← waiting-too; a finished one aside
    rows = [
        {"id": t, "project_id": "p", "status": status, "provenance_id": r["a"].id if i == 0 else None}
        for i, (t, status) in enumerate(
            zip(ids, ["completed", "pending", "running", "completed"], strict=True)
        )
    ]
    assert isinstance(storage, SqlStorage)
    async with storage.db.transaction() as tx:  # the tasks tables are the tasks repository's
        for i, row in enumerate(rows):
            await tx.conn.execute(
                tasks.insert().values(
                    **row,
                    description="d",
                    priority="normal",
                    priority_rank=2,
                    options={},
                    max_attempts=1,
                    timeout_seconds=60,
                    created_at=BASE + timedelta(seconds=i),
                    updated_at=BASE,
                )
            )
        await tx.conn.execute(
            task_dependencies.insert(),
            [
                {"task_id": ids[1], "depends_on_id": ids[0]},
                {"task_id": ids[2], "depends_on_id": ids[1]},
                {"task_id": ids[3], "depends_on_id": ids[0]},
            ],
        )
    async with storage.read() as uow:
        waiting = await uow.provenance.waiting_tasks([r["a"].id], ["pending", "running"], None)
        scoped = await uow.provenance.waiting_tasks([r["a"].id], ["pending", "running"], ["q"])
        counts = await uow.provenance.in_flight_by_project(["p", "q"], ["pending", "running"])
    assert [(t.id, t.status) for t in waiting] == [(ids[1], "pending"), (ids[2], "running")]
    assert scoped == []
    assert counts == {"p": 2}


async def test_impact_lists_the_nearest_and_reads_tasks_of_every_record_reached(storage: Storage) -> None:
    r = await chain(storage, "abcd")  # a ← b ← c ← d; c's task waits on a task producing d
    ids = [uuid.uuid4() for _ in range(3)]  # producer of d ← waiting; one in flight in q
    assert isinstance(storage, SqlStorage)
    async with storage.db.transaction() as tx:
        for i, (project, status, record) in enumerate(
            [("p", "completed", r["d"].id), ("p", "pending", None), ("q", "running", None)]
        ):
            await tx.conn.execute(
                tasks.insert().values(
                    id=ids[i],
                    project_id=project,
                    status=status,
                    provenance_id=record,
                    description="d",
                    priority="normal",
                    priority_rank=2,
                    options={},
                    max_attempts=1,
                    timeout_seconds=60,
                    created_at=BASE + timedelta(seconds=i),
                    updated_at=BASE,
                )
            )
        await tx.conn.execute(task_dependencies.insert(), [{"task_id": ids[1], "depends_on_id": ids[0]}])
    async with storage.read() as uow:
        found = await uow.provenance.impact(r["a"].id, 10, listed=1, statuses=["pending", "running"])
        cut = await uow.provenance.impact(r["a"].id, 2, listed=5, statuses=["pending", "running"])
        missing = await uow.provenance.impact(uuid.uuid4(), 10, listed=5, statuses=["pending"])
    # The root and the one listed record, with their outputs; the others count and wait all the same.
    assert [(n.task_id, n.depth) for n in found.nodes] == [("task-a", 0), ("task-b", 1)]
    assert orjson.loads(found.nodes[1].outputs or "null") == r["b"].outputs
    assert (found.total, found.max_depth, found.truncated) == (3, 3, False)
    assert [(t.id, t.project_id, t.status) for t in found.waiting] == [(ids[1], "p", "pending")]
    assert found.waiting[0].created_at == BASE + timedelta(seconds=1)
    assert found.in_flight_by_project == {"p": 1}  # q has no record reached
    assert [n.task_id for n in cut.nodes] == ["task-a", "task-b", "task-c"]
    assert (cut.total, cut.max_depth, cut.truncated, cut.waiting) == (2, 2, True, [])
    assert missing.nodes == [] and missing.total == 0 and missing.waiting == []
