"""TaintRepository (taint marks and the cascade walk, the trail, applied cascades,
checkpoints, project figures) on both backends."""

from __future__ import annotations

import uuid
from datetime import timedelta

from orchestration_service.db.tables import tasks
from orchestration_service.repositories.ports import Storage
from orchestration_service.repositories.provenance import (
    Cascade,
    Checkpoint,
    Edge,
    ProjectSince,
    RecordSeed,
    TaintEvent,
    TaintEventFilter,
)
from orchestration_service.repositories.storage import SqlStorage
from tests.integration.repositories.test_provenance import BASE, chain


def event(
    n: int, record: uuid.UUID, action: str, cascade: str, *, project: str = "p", depth: int = 0
) -> TaintEvent:
    return TaintEvent(
        id=f"e{n}",
        timestamp=BASE + timedelta(seconds=n),
        artifact_id=f"art-{n}",
        provenance_id=record,
        reason="why",
        source_artifact_id="art-src" if depth else None,
        source_provenance_id=None,
        cascade_depth=depth,
        cascade_id=cascade,
        action=action,
        project_id=project,
    )


async def test_taint_then_cascade_suspect_and_clear(storage: Storage) -> None:
    r = await chain(storage, "abcd")
    async with storage.transaction() as uow:
        seed = RecordSeed((r["b"].id,))
        assert [(s.id, s.project_id) for s in await uow.taint.seed_records(seed)] == [(r["b"].id, "p")]
        await uow.taint.mark_tainted(seed, at=BASE, reason="bad", tainted_by="ops")
        targets = await uow.taint.cascade_targets(seed, 1000, "p")
        assert [(t.id, t.depth, t.source, t.is_tainted) for t in targets] == [
            (r["c"].id, 1, r["b"].id, False),
            (r["d"].id, 2, r["b"].id, False),
        ]
        assert targets[0].outputs == r["c"].outputs
        assert await uow.taint.cascade_targets(seed, 1000, "other") == []
        await uow.taint.mark_suspect({t.id: "art-b" for t in targets}, at=BASE)
        await uow.taint.mark_suspect({}, at=BASE)
        flags = await uow.taint.taint_flags([r["b"].id, r["c"].id, r["a"].id])
        assert (
            flags[r["b"].id].is_tainted,
            flags[r["c"].id].is_suspect,
            flags[r["c"].id].suspect_source,
        ) == (
            True,
            True,
            "art-b",
        )
        assert not flags[r["a"].id].is_tainted and not flags[r["a"].id].is_suspect
        await uow.taint.clear_suspect(r["c"].id)
        counts = await uow.taint.project_counts("p")
    assert (counts.total, counts.tainted, counts.suspect, counts.affected, counts.pending_revalidation) == (
        4,
        1,
        1,
        2,
        1,
    )
    async with storage.read() as uow:
        tainted = await uow.provenance.get(r["b"].id)
    assert tainted is not None and tainted.verification_status == "tainted" and tainted.tainted_by == "ops"


async def test_several_seeds_name_the_nearest_and_a_project_range(storage: Storage) -> None:
    r = await chain(storage, "abcd")  # a ← b ← c ← d
    async with storage.transaction() as uow:
        targets = await uow.taint.cascade_targets(RecordSeed((r["a"].id, r["c"].id)), 1000, "p")
        assert [(t.id, t.depth, t.source) for t in targets] == [
            (r["b"].id, 1, r["a"].id),
            (r["d"].id, 1, r["c"].id),
        ]
        since = ProjectSince("p", r["b"].created_at)  # c and d
        assert {s.id for s in await uow.taint.seed_records(since)} == {r["c"].id, r["d"].id}
        await uow.taint.mark_tainted(since, at=BASE, reason="rolled_back", tainted_by=None)
        assert [(t.id, t.source) for t in await uow.taint.cascade_targets(since, 1000, "p")] == []
        flags = await uow.taint.taint_flags([r["b"].id, r["c"].id, r["d"].id])
    assert [flags[r[x].id].is_tainted for x in "bcd"] == [False, True, True]


async def test_cycles_end_the_cascade_walk(storage: Storage) -> None:
    r = await chain(storage, "abc")
    async with storage.transaction() as uow:
        await uow.provenance.add_dependencies(
            [Edge(artifact_id=r["a"].id, depends_on=r["c"].id, via_artifact_id="art-c")]
        )
        targets = await uow.taint.cascade_targets(RecordSeed((r["a"].id,)), 1000, "p")
    assert [(t.id, t.depth) for t in targets] == [(r["b"].id, 1), (r["c"].id, 2)]


async def test_the_trail_pages_newest_first_and_its_last_entry(storage: Storage) -> None:
    r = await chain(storage, "ab")
    a, b = r["a"].id, r["b"].id
    async with storage.transaction() as uow:
        await uow.taint.add_taint_events(
            [event(1, a, "taint", "c1"), event(2, b, "suspect", "c1", depth=1), event(3, b, "clear", "c1")]
        )
        await uow.taint.add_taint_events([event(4, b, "taint", "c2", project="q")])
        await uow.taint.add_taint_events([])
    async with storage.read() as uow:
        page = await uow.taint.find_taint_events(TaintEventFilter(project_ids=["p"]), limit=2)
        assert [e.id for e in page] == ["e3", "e2"]
        rest = await uow.taint.find_taint_events(
            TaintEventFilter(), limit=5, after=(page[-1].timestamp, page[-1].id)
        )
        assert [e.id for e in rest] == ["e1"]
        assert [
            e.id for e in await uow.taint.find_taint_events(TaintEventFilter(action="taint"), limit=5)
        ] == ["e4", "e1"]
        assert [
            e.id for e in await uow.taint.find_taint_events(TaintEventFilter(provenance_id=a), limit=5)
        ] == ["e1"]
        assert await uow.taint.count_taint_events(TaintEventFilter(cascade_id="c1")) == 3
        assert await uow.taint.count_taint_events(TaintEventFilter(artifact_id="art-2")) == 1
        assert await uow.taint.count_taint_events(TaintEventFilter(), cap=1) == 2
        last = await uow.taint.last_trail_event(b)
        assert last is not None and last.id == "e4" and last.cascade_depth == 0
        only_suspect = await uow.taint.last_trail_event(b, ("suspect",))
        assert only_suspect == event(2, b, "suspect", "c1", depth=1)
        assert await uow.taint.last_trail_event(uuid.uuid4()) is None
        assert await uow.taint.cascade_summary("p", "c1") == {"taint": 1, "suspect": 1, "clear": 1}
        # A cascade known only from its trail (imported) counts as applied, in its project only.
        assert await uow.taint.cascade_known("p", "c1") and not await uow.taint.cascade_known("q", "c1")


async def test_a_cascade_is_claimed_once_per_project(storage: Storage) -> None:
    first = Cascade(
        id="c", kind="rollback", project_id="p", created_at=BASE, rollback_id="rb", checkpoint_id="cp"
    )
    async with storage.transaction() as uow:
        assert await uow.taint.claim_cascade(first)
        assert not await uow.taint.claim_cascade(
            Cascade(id="c", kind="taint", project_id="p", created_at=BASE)
        )
        assert not await uow.taint.claim_cascade(
            Cascade(id="d", kind="rollback", project_id="p", created_at=BASE, rollback_id="rb")
        )
        assert await uow.taint.claim_cascade(Cascade(id="c", kind="taint", project_id="q", created_at=BASE))
        await uow.taint.set_cascade_result("p", "c", {"tainted_count": 2})
    async with storage.read() as uow:
        stored = await uow.taint.get_cascade("p", "c")
        assert stored is not None and stored.result == {"tainted_count": 2} and stored.kind == "rollback"
        assert await uow.taint.cascade_by_rollback("p", "rb") == stored
        assert await uow.taint.cascade_by_rollback("q", "rb") is None
        assert await uow.taint.get_cascade("p", "nope") is None
        assert await uow.taint.cascade_known("p", "c") and not await uow.taint.cascade_known("p", "d")


async def test_checkpoints_snapshot_list_and_invalidate(storage: Storage) -> None:
    r = await chain(storage, "ab")
    async with storage.transaction() as uow:
        snap = await uow.taint.project_snapshot("p")
        assert (snap.provenance_count, snap.artifact_count, snap.last_provenance_id, snap.last_task_id) == (
            2,
            2,
            str(r["b"].id),
            "task-b",
        )
        empty = await uow.taint.project_snapshot("none")
        assert (empty.provenance_count, empty.last_task_id) == (0, "")
        for i in range(3):
            await uow.taint.add_checkpoint(
                Checkpoint(
                    id=f"cp{i}",
                    project_id="p",
                    created_at=BASE + timedelta(hours=i),
                    git_ref="g",
                    provenance_count=2,
                    artifact_count=2,
                    last_provenance_id="",
                    last_task_id="",
                    rag_state_ref="",
                    work_product_ref="",
                    description="",
                    trigger="manual",
                )
            )
        assert await uow.taint.invalidate_checkpoints_after("p", BASE, at=BASE, by="rb") == 2
        assert await uow.taint.invalidate_checkpoints_after("p", BASE, at=BASE, by="rb") == 0
    async with storage.read() as uow:
        got = await uow.taint.get_checkpoint("cp1")
        assert got is not None and not got.is_valid and got.invalidated_by == "rb"
        assert await uow.taint.get_checkpoint("nope") is None
        every, total = await uow.taint.list_checkpoints("p", include_invalid=True, limit=2, offset=0)
        assert [c.id for c in every] == ["cp2", "cp1"] and total == 3
        valid, total = await uow.taint.list_checkpoints("p", include_invalid=False, limit=10, offset=0)
        assert [c.id for c in valid] == ["cp0"] and total == 1


async def test_tasks_to_cancel_parents_first(storage: Storage) -> None:
    parent, child, old, done = (uuid.uuid4() for _ in range(4))
    assert isinstance(storage, SqlStorage)
    async with storage.db.transaction() as tx:  # the tasks tables are the tasks repository's
        for tid, status, depth, minutes in (
            (child, "running", 1, 5),
            (parent, "pending", 0, 10),
            (old, "pending", 0, -10),
            (done, "completed", 0, 20),
        ):
            await tx.conn.execute(
                tasks.insert().values(
                    id=tid,
                    project_id="p",
                    status=status,
                    depth=depth,
                    description="d",
                    priority="normal",
                    priority_rank=2,
                    options={},
                    max_attempts=1,
                    timeout_seconds=60,
                    created_at=BASE + timedelta(minutes=minutes),
                    updated_at=BASE,
                )
            )
    async with storage.read() as uow:
        found = await uow.tasks.cancellable_since("p", BASE, ["pending", "running"])
        assert await uow.tasks.cancellable_since("q", BASE, ["pending", "running"]) == []
    assert found == [parent, child]
