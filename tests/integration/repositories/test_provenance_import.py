"""ProvenanceImportRepository on both backends: rows in and out by id, the graph linked from
what records produced and used (per project, earliest producer, unresolved inputs kept and
resolved later, idempotent), links forgotten, statistics refreshed, and the keyset reads of
the export."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from orchestration_service.db.tables import (
    artifact_dependencies,
    provenance_artifacts,
    provenance_unresolved_inputs,
)
from orchestration_service.domain.provenance import parse_checkpoint, parse_record, parse_taint_event
from orchestration_service.repositories.ports import Storage
from orchestration_service.repositories.provenance_import import LegacyRow, RecordLinks
from orchestration_service.repositories.storage import SqlStorage

T0 = datetime(2026, 1, 9, 18, 0, tzinfo=UTC)


def record(n: int, *, project: str = "p", minutes: int = 0, **fields: Any) -> LegacyRow:
    doc = {
        "id": str(uuid.UUID(int=n, version=4)),
        "task_id": f"task-{n}",
        "project_id": project,
        "model_used": "phi3",
        "created_at": (T0 + timedelta(minutes=minutes)).replace(tzinfo=None).isoformat(),
        **fields,
    }
    return parse_record(doc).row


def links(row: LegacyRow, outputs: tuple[str, ...] = (), inputs: tuple[str, ...] = ()) -> RecordLinks:
    return RecordLinks(
        record_id=row["id"],
        project_id=row["project_id"],
        created_at=row["created_at"],
        output_ids=outputs,
        input_refs=tuple((a, "consumed") for a in inputs),
    )


async def graph(storage: Storage) -> tuple[set[Any], set[Any], set[Any]]:
    """(project, artifact, producer) rows, (record, depends on, via) edges, unresolved inputs."""
    assert isinstance(storage, SqlStorage)
    pa, ad, u = provenance_artifacts, artifact_dependencies, provenance_unresolved_inputs
    async with storage.db.read() as conn:
        artifacts = set(
            (await conn.execute(sa.select(pa.c.project_id, pa.c.artifact_id, pa.c.provenance_id))).all()
        )
        edges = set(
            (await conn.execute(sa.select(ad.c.artifact_id, ad.c.depends_on, ad.c.via_artifact_id))).all()
        )
        waiting = set((await conn.execute(sa.select(u.c.record_id, u.c.project_id, u.c.artifact_id))).all())
    return artifacts, edges, waiting


async def test_insert_stored_and_update_by_id(storage: Storage) -> None:
    a, b = record(1), record(2, worker_id="w-1")
    event = parse_taint_event(
        {"id": "te-1", "timestamp": "2026-01-09T18:00:00", "provenance_id": str(a["id"])}, {a["id"]: "p"}, 0
    )
    cp = parse_checkpoint("cp-1", {"project_id": "p", "created_at": "2026-01-09T18:00:00"})
    async with storage.transaction() as uow:
        repo = uow.provenance_import
        assert await repo.stored("records", [a["id"]]) == {}
        await repo.insert("records", [a, b])
        await repo.insert("taint_events", [event])
        await repo.insert("checkpoints", [cp])
    async with storage.transaction() as uow:
        repo = uow.provenance_import
        stored = await repo.stored("records", [a["id"], uuid.uuid4()])
        assert list(stored) == [a["id"]]
        assert stored[a["id"]]["model_used"] == "phi3" and stored[a["id"]]["created_at"] == T0
        assert stored[a["id"]]["outputs"] == [] and stored[a["id"]]["execution"] == a["execution"]
        assert (await repo.stored("taint_events", ["te-1", "te-2"]))["te-1"]["project_id"] == "p"
        assert list(await repo.stored("checkpoints", ["cp-1"])) == ["cp-1"]
        await repo.update("records", [{**b, "worker_id": "w-2", "tokens_input": 7}])
        await repo.update("checkpoints", [{**cp, "git_ref": "abc"}])
    async with storage.read() as uow:
        repo = uow.provenance_import
        changed = (await repo.stored("records", [b["id"]]))[b["id"]]
        assert changed["worker_id"] == "w-2" and changed["tokens_input"] == 7
        assert (await repo.stored("checkpoints", ["cp-1"]))["cp-1"]["git_ref"] == "abc"
        assert await repo.projects_of([a["id"], b["id"], uuid.uuid4()]) == {a["id"]: "p", b["id"]: "p"}


async def test_many_ids_are_looked_up_in_several_statements(storage: Storage) -> None:
    rows = [record(n, minutes=n) for n in range(1, 2502)]
    async with storage.transaction() as uow:
        await uow.provenance_import.insert("records", rows)
    async with storage.read() as uow:
        stored = await uow.provenance_import.stored("records", [r["id"] for r in rows])
        assert len(stored) == len(rows)
        assert len(await uow.provenance_import.projects_of([r["id"] for r in rows])) == len(rows)


async def test_link_per_project_earliest_producer_unresolved_then_late(storage: Storage) -> None:
    first, second = record(1, minutes=0), record(2, minutes=5)  # both produce x; the first owns it
    user = record(3, minutes=9)
    other = record(4, project="q", minutes=9)  # q uses x: p's x is not q's
    async with storage.transaction() as uow:
        await uow.provenance_import.insert("records", [first, second, user, other])
        added = await uow.provenance_import.link(
            [
                links(second, ("x",)),
                links(first, ("x", "y")),
                links(user, inputs=("x", "nobody")),
                links(other, inputs=("x",)),
            ]
        )
    assert (added.artifacts_added, added.dependencies_added) == (2, 1)
    artifacts, edges, waiting = await graph(storage)
    assert artifacts == {("p", "x", first["id"]), ("p", "y", first["id"])}
    assert edges == {(user["id"], first["id"], "x")}
    assert waiting == {(user["id"], "p", "nobody"), (other["id"], "q", "x")}

    producer = record(5, project="q", minutes=1)
    async with storage.transaction() as uow:
        await uow.provenance_import.insert("records", [producer])
        added = await uow.provenance_import.link([links(producer, ("x",))])
    assert (added.artifacts_added, added.dependencies_added) == (1, 1)  # q's x; other -> producer, late
    artifacts, edges, waiting = await graph(storage)
    assert ("q", "x", producer["id"]) in artifacts and (other["id"], producer["id"], "x") in edges
    assert waiting == {(user["id"], "p", "nobody")}

    # Linking again (a re-run) adds nothing and changes nothing.
    before = await graph(storage)
    async with storage.transaction() as uow:
        added = await uow.provenance_import.link(
            [links(first, ("x", "y")), links(user, inputs=("x", "nobody"))]
        )
    assert (added.artifacts_added, added.dependencies_added) == (0, 0)
    assert await graph(storage) == before


async def test_forget_links_drops_a_records_own_graph(storage: Storage) -> None:
    producer, user = record(1), record(2, minutes=1)
    async with storage.transaction() as uow:
        await uow.provenance_import.insert("records", [producer, user])
        await uow.provenance_import.link(
            [links(producer, ("x",)), links(user, ("z",), inputs=("x", "nobody"))]
        )
    async with storage.transaction() as uow:
        await uow.provenance_import.forget_links([user["id"]])
    artifacts, edges, waiting = await graph(storage)
    assert artifacts == {("p", "x", producer["id"])} and edges == set() and waiting == set()


async def test_a_failed_link_leaves_nothing_behind(storage: Storage) -> None:
    row = record(1)

    class Boom(Exception):
        pass

    try:
        async with storage.transaction() as uow:
            await uow.provenance_import.insert("records", [row])
            await uow.provenance_import.link([links(row, ("x",))])
            raise Boom
    except Boom:
        pass
    assert await graph(storage) == (set(), set(), set())
    async with storage.transaction() as uow:  # the staging tables are gone with it
        await uow.provenance_import.insert("records", [row])
        assert (await uow.provenance_import.link([links(row, ("x",))])).artifacts_added == 1


async def test_refresh_statistics_outside_a_transaction(storage: Storage) -> None:
    async with storage.transaction() as uow:
        await uow.provenance_import.insert("records", [record(1)])
    async with storage.read() as uow:
        for part in ("records", "graph", "taint_events", "checkpoints"):
            await uow.provenance_import.refresh_statistics(part)


async def test_export_reads_in_key_order_by_project(storage: Storage) -> None:
    rows = [record(n, project="p" if n % 2 else "q", minutes=10 - n) for n in range(1, 8)]
    events = [
        parse_taint_event({"id": i, "timestamp": ts}, None, seq)
        for i, ts, seq in [
            ("b", "2026-01-09T18:00:00", 1),
            ("a", "2026-01-09T18:00:00", 2),
            ("c", "2026-01-09T17:00:00", None),
        ]
    ]
    cps = [
        parse_checkpoint(f"cp-{n}", {"project_id": "p", "created_at": f"2026-01-09T1{n}:00:00"})
        for n in (3, 1, 2)
    ]
    async with storage.transaction() as uow:
        repo = uow.provenance_import
        await repo.insert("records", rows)
        await repo.insert("taint_events", events)
        await repo.insert("checkpoints", cps)
    async with storage.read() as uow:
        repo = uow.provenance_import
        assert await repo.count_records(None) == 7 and await repo.count_records("p") == 4
        seen: list[Any] = []
        after = None
        while page := await repo.records_after(None, after, 3):
            seen.extend(r["id"] for r in page)
            after = (page[-1]["created_at"], page[-1]["id"])
        assert seen == [r["id"] for r in sorted(rows, key=lambda r: (r["created_at"], r["id"]))]
        only_p = await repo.records_after("p", None, 10)
        assert {r["project_id"] for r in only_p} == {"p"} and len(only_p) == 4
        assert [e["id"] for e in await repo.taint_events_in_order(None)] == ["c", "b", "a"]
        assert await repo.taint_events_in_order("p") == []
        first = await repo.checkpoints_after("p", None, 2)
        assert [c["id"] for c in first] == ["cp-1", "cp-2"]
        rest = await repo.checkpoints_after("p", (first[-1]["created_at"], first[-1]["id"]), 2)
        assert [c["id"] for c in rest] == ["cp-3"]
        assert await repo.checkpoints_after("q", None, 2) == []
