"""Write side of the provenance store: taint with its suspect cascade, clear-suspect,
checkpoints and rollbacks.

A taint marks records tainted (verification status ``tainted``) and every record downstream
of them suspect (``suspect_since``, ``suspect_source`` = the tainted artifact it depends on).
Each change appends taint events (depth 0 at the tainted records, the distance for the
suspects, one ``cascade_id``) and publishes ``artifact.tainted`` / ``artifact.suspect``, one per
artifact, through the outbox: all in the caller's one transaction. A cascade id is applied at
most once (``taint_cascades``): a repeated one answers with what it did the first time.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import RowMapping

from orchestration_service.db.engine import Database, Transaction
from orchestration_service.db.errors import retry_conflicts
from orchestration_service.db.tables import provenance_records, tasks
from orchestration_service.domain import events as ev
from orchestration_service.domain.errors import EventRejected, Forbidden, NotFound
from orchestration_service.domain.ids import uuid7
from orchestration_service.domain.lifecycle import FINAL_STATES, TaskStatus
from orchestration_service.domain.provenance import artifacts_or_record, output_artifact_ids, primary_artifact
from orchestration_service.repositories.ports import UnitOfWork
from orchestration_service.repositories.provenance import ProvenanceRepository
from orchestration_service.repositories.storage import unit_of_work
from orchestration_service.services.lifecycle import Lifecycle, emit, utcnow
from orchestration_service.services.provenance_graph import parse_record_id, visible

if TYPE_CHECKING:
    from orchestration_service.schemas.events import CloudEvent, RollbackRequested

CASCADE_MAX_DEPTH = 1000
"""How far a suspect cascade reaches: far beyond any real lineage (the Cascade Service's own
limit is 10), it only bounds the walk around cycles in bad data."""

ROLLED_BACK = "rolled_back"
CANCELLABLE = [
    TaskStatus.PENDING.value,
    TaskStatus.DECOMPOSING.value,
    TaskStatus.RUNNING.value,
    TaskStatus.VALIDATING.value,
]

pr = provenance_records


@dataclass(slots=True)
class CascadeResult:
    cascade_id: str
    provenance_ids: list[uuid.UUID] = field(default_factory=list)
    artifact_ids: list[str] = field(default_factory=list)
    tainted_count: int = 0
    suspect_count: int = 0
    max_depth: int = 0
    events_published: int = 0
    already_applied: bool = False

    def document(self) -> dict[str, Any]:
        return {
            "cascade_id": self.cascade_id,
            "provenance_ids": [str(i) for i in self.provenance_ids],
            "artifact_ids": self.artifact_ids,
            "tainted_count": self.tainted_count,
            "suspect_count": self.suspect_count,
            "max_depth": self.max_depth,
            "events_published": self.events_published,
            "already_applied": self.already_applied,
        }


def _rejected(reason: str, field_name: str, kind: str = "unknown-record") -> Exception:
    return EventRejected(kind, reason, field=field_name)


def _trail_entry(
    action: str,
    art: str,
    rid: uuid.UUID,
    project: str,
    why: str,
    depth: int,
    source: tuple[str, uuid.UUID] | None,
    cascade_id: str,
    now: datetime,
) -> tuple[dict[str, Any], ev.OutgoingEvent]:
    """One taint-trail row and its event (``artifact.tainted`` or ``artifact.suspect``)."""
    row = {
        "id": str(uuid7()),
        "timestamp": now,
        "artifact_id": art[:255],
        "provenance_id": rid,
        "reason": why,
        "source_artifact_id": source[0] if source else None,
        "source_provenance_id": source[1] if source else None,
        "cascade_depth": depth,
        "cascade_id": cascade_id,
        "action": action,
        "project_id": project,
        "extra": None,
    }
    event = ev.OutgoingEvent(
        name=ev.ARTIFACT_TAINTED if action == "taint" else ev.ARTIFACT_SUSPECT,
        subject=art,
        project_id=project,
        data={
            "artifact_id": art,
            "provenance_id": str(rid),
            "project_id": project,
            "reason": why,
            "cascade_id": cascade_id,
            "source_artifact_id": source[0] if source else None,
            "cascade_depth": depth,
        },
    )
    return row, event


class TaintCascade:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- HTTP use cases (own transaction) ----------------------------------------------------
    async def taint(
        self,
        record_id: uuid.UUID | str,
        *,
        reason: str,
        tainted_by: str,
        cascade_id: str | None = None,
        project_ids: Sequence[str] | None = None,
    ) -> CascadeResult:
        rid = parse_record_id(record_id)

        async def once() -> CascadeResult:
            async with self.db.transaction() as tx:
                row = await ProvenanceRepository(tx.conn).get(rid, for_update=True)
                if row is None or not visible(row["project_id"], project_ids):
                    raise NotFound(f"provenance record {record_id} does not exist")
                return await self.taint_record(
                    tx, row, reason=reason, tainted_by=tainted_by, cascade_id=cascade_id
                )

        # Two cascades that reach common records, or a cascade and a task's own events, can
        # deadlock on their row locks: PostgreSQL aborts one, which runs again.
        return await retry_conflicts(once, what=f"taint {rid}")

    async def clear_suspect(
        self,
        record_id: uuid.UUID | str,
        *,
        reason: str | None,
        cleared_by: str | None,
        project_ids: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        rid = parse_record_id(record_id)
        async with self.db.transaction() as tx:
            repo = ProvenanceRepository(tx.conn)
            row = await repo.get(rid, for_update=True)
            if row is None or not visible(row["project_id"], project_ids):
                raise NotFound(f"provenance record {record_id} does not exist")
            if not row["is_suspect"]:
                return {"provenance_id": rid, "cleared": False, "cascade_id": None, "artifact_ids": []}
            last = await repo.last_trail_event(rid, ("suspect",))
            cascade_id = last["cascade_id"] if last else str(uuid7())
            now = utcnow()
            text = reason or "revalidated"
            if cleared_by:
                text = f"{text} (cleared by {cleared_by})"
            artifacts = artifacts_or_record(row["outputs"], rid)
            await repo.clear_suspect(rid)
            await repo.add_taint_events(
                [
                    {
                        "id": str(uuid7()),
                        "timestamp": now,
                        "artifact_id": art,
                        "provenance_id": rid,
                        "reason": text,
                        "source_artifact_id": row["suspect_source"],
                        "source_provenance_id": last["source_provenance_id"] if last else None,
                        "cascade_depth": last["cascade_depth"] if last else 0,
                        "cascade_id": cascade_id,
                        "action": "clear",
                        "project_id": row["project_id"],
                        "extra": None,
                    }
                    for art in artifacts
                ]
            )
        return {"provenance_id": rid, "cleared": True, "cascade_id": cascade_id, "artifact_ids": artifacts}

    async def create_checkpoint(
        self,
        project_id: str,
        *,
        git_ref: str = "",
        rag_state_ref: str = "",
        work_product_ref: str = "",
        description: str = "",
        trigger: str = "manual",
        project_ids: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        if not visible(project_id, project_ids):
            raise Forbidden(f"this API key may not write to project {project_id}")
        async with self.db.transaction() as tx:
            repo = ProvenanceRepository(tx.conn)
            row: dict[str, Any] = {
                "id": str(uuid7()),
                "project_id": project_id,
                "created_at": utcnow(),
                **await repo.project_snapshot(project_id),
                "git_ref": git_ref,
                "rag_state_ref": rag_state_ref,
                "work_product_ref": work_product_ref,
                "description": description,
                "trigger": trigger,
                "is_valid": True,
                "invalidated_at": None,
                "invalidated_by": None,
                "extra": None,
            }
            await repo.add_checkpoint(row)
        return row

    # -- inside a caller's transaction -------------------------------------------------------
    async def taint_record(
        self,
        tx: Transaction,
        row: RowMapping,
        *,
        reason: str,
        tainted_by: str,
        cascade_id: str | None = None,
        source_artifact: str | None = None,
        event_id: str | None = None,
    ) -> CascadeResult:
        """Taint one record (already read, locked on PostgreSQL) and cascade."""
        repo = ProvenanceRepository(tx.conn)
        cascade_id = cascade_id or str(uuid7())
        project = row["project_id"]  # a cascade id is the tainted record's project's
        if await repo.cascade_known(project, cascade_id):
            return await self._existing(repo, project, cascade_id)
        claimed = await repo.claim_cascade(
            {
                "id": cascade_id,
                "kind": "taint",
                "project_id": row["project_id"],
                "provenance_id": row["id"],
                "reason": reason,
                "requested_by": tainted_by[:255],
                "event_id": event_id,
                "created_at": utcnow(),
            }
        )
        if not claimed:
            return await self._existing(repo, project, cascade_id)
        seed = sa.select(pr.c.id).where(pr.c.id == row["id"])
        result = await self._apply(
            tx,
            seed,
            [row],
            project_id=project,
            reason=reason,
            tainted_by=tainted_by,
            cascade_id=cascade_id,
            source_artifact={row["id"]: source_artifact} if source_artifact else {},
        )
        result.artifact_ids = output_artifact_ids(row["outputs"])
        await repo.set_cascade_result(project, cascade_id, result.document())
        return result

    async def inherit(self, tx: Transaction, record: dict[str, Any], upstream: dict[uuid.UUID, str]) -> bool:
        """A new record that consumed an artifact of a tainted or suspect record is suspect
        from the start, as if the cascade had reached it: every transitive dependent of a
        tainted record is suspect. ``upstream``: each record it depends on → the artifact it
        consumed from it. True if it became suspect.

        On PostgreSQL the upstream rows are read FOR SHARE: a taint of one of them that is
        committing is waited for and seen; one that starts later waits for this record's
        commit, and then finds it downstream."""
        if not upstream:
            return False
        repo = ProvenanceRepository(tx.conn)
        flags = await repo.taint_flags(list(upstream))
        found: tuple[uuid.UUID, str, RowMapping] | None = None
        for dep in sorted(upstream, key=str):
            f = flags.get(dep)
            if f is not None and f["is_tainted"]:
                found = (dep, upstream[dep], f)
                break
            if f is not None and f["is_suspect"] and found is None:
                found = (dep, upstream[dep], f)
        if found is None:
            return False
        dep, consumed, f = found
        last = await repo.last_trail_event(dep)
        if f["is_tainted"]:
            source, depth = (consumed, dep), 1
        else:
            # Suspect itself: the source is its own (the artifact first tainted), one step further.
            origin = last["source_provenance_id"] if last and last["source_provenance_id"] else dep
            source = (f["suspect_source"] or consumed, origin)
            depth = last["cascade_depth"] + 1 if last else 1
        cascade_id = last["cascade_id"] if last and last["cascade_id"] else str(uuid7())
        now = utcnow()
        await repo.mark_suspect({record["id"]: source[0]}, at=now)
        why = f"consumed {consumed}, which is {'tainted' if f['is_tainted'] else 'suspect'}"
        rid, project = record["id"], record["project_id"]
        entries = [
            _trail_entry("suspect", art, rid, project, why, depth, source, cascade_id, now)
            for art in artifacts_or_record(record["outputs"], rid)
        ]
        await repo.add_taint_events([row for row, _ in entries])
        await emit(unit_of_work(tx), [event for _, event in entries])
        return True

    async def _existing(self, repo: ProvenanceRepository, project: str, cascade_id: str) -> CascadeResult:
        stored = await repo.get_cascade(project, cascade_id)
        doc = (stored["result"] if stored else None) or {}
        if doc:
            return CascadeResult(
                cascade_id=cascade_id,
                provenance_ids=[uuid.UUID(i) for i in doc.get("provenance_ids", [])],
                artifact_ids=list(doc.get("artifact_ids", [])),
                tainted_count=int(doc.get("tainted_count", 0)),
                suspect_count=int(doc.get("suspect_count", 0)),
                max_depth=int(doc.get("max_depth", 0)),
                events_published=0,
                already_applied=True,
            )
        counts = await repo.cascade_summary(project, cascade_id)
        return CascadeResult(
            cascade_id=cascade_id,
            tainted_count=counts.get("taint", 0),
            suspect_count=counts.get("suspect", 0),
            already_applied=True,
        )

    async def _apply(
        self,
        tx: Transaction,
        seed: sa.Select[Any],
        roots: Sequence[RowMapping],
        *,
        project_id: str,
        reason: str,
        tainted_by: str,
        cascade_id: str,
        source_artifact: dict[Any, str],
    ) -> CascadeResult:
        """Taint the seed records (``roots``: their rows, all of ``project_id``) and make
        everything downstream in the project suspect."""
        repo = ProvenanceRepository(tx.conn)
        now = utcnow()
        await repo.mark_tainted(seed, at=now, reason=reason, tainted_by=tainted_by[:255])
        # A cascade stays in its project: an edge into another project's record can only be
        # legacy data from before artifact ids were scoped.
        targets = await repo.cascade_targets(
            seed, CASCADE_MAX_DEPTH, project_id, only_root=roots[0]["id"] if len(roots) == 1 else None
        )
        named = {
            r["id"]: source_artifact.get(r["id"]) or primary_artifact(r["outputs"], r["id"]) for r in roots
        }
        suspects = [t for t in targets if not t["is_tainted"]]
        await repo.mark_suspect({t["id"]: named[t["source"]] for t in suspects}, at=now)

        entries = [
            _trail_entry("taint", art, r["id"], r["project_id"], reason, 0, None, cascade_id, now)
            for r in roots
            for art in artifacts_or_record(r["outputs"], r["id"])
        ]
        for t in suspects:
            src = named[t["source"]]
            why, source = f"depends on tainted {src}", (src, t["source"])
            entries.extend(
                _trail_entry(
                    "suspect", art, t["id"], t["project_id"], why, t["depth"], source, cascade_id, now
                )
                for art in artifacts_or_record(t["outputs"], t["id"])
            )
        out = [event for _, event in entries]
        await repo.add_taint_events([row for row, _ in entries])
        await emit(unit_of_work(tx), out)
        return CascadeResult(
            cascade_id=cascade_id,
            provenance_ids=[r["id"] for r in roots],
            tainted_count=len(roots),
            suspect_count=len(suspects),
            max_depth=max((t["depth"] for t in suspects), default=0),
            events_published=len(out),
        )

    # -- rollback.requested --------------------------------------------------------------------
    def rollback_handler(
        self, lifecycle: Lifecycle
    ) -> Callable[[UnitOfWork, RollbackRequested, CloudEvent], Awaitable[str]]:
        async def apply(uow: UnitOfWork, payload: RollbackRequested, ce: CloudEvent) -> str:
            # Bridge (issue 17): the provenance code still works on the transaction.
            tx: Transaction = uow.tx  # type: ignore[attr-defined]
            return await self.apply_rollback(tx, payload, ce, lifecycle)

        return apply

    async def check_rollback_scope(
        self, tx: Transaction, p: RollbackRequested, projects: Collection[str]
    ) -> RollbackRequested:
        """Refuse a rollback that names a record, artifact or checkpoint outside
        ``projects``, in the words used when it does not exist (nothing tells the two apart).
        Returns it with the record it targets named (resolved within ``projects``), so that
        applying it does not look beyond them."""
        if p.artifact_id or p.provenance_id:
            row = await self.rollback_target(ProvenanceRepository(tx.conn), p, projects, lock=False)
            p = p.model_copy(update={"provenance_id": str(row["id"])})
        if p.project_id and p.checkpoint_id and p.project_id not in projects:
            raise _rejected(
                f"checkpoint {p.checkpoint_id} of project {p.project_id} does not exist", "data.checkpoint_id"
            )
        return p

    async def rollback_target(
        self,
        repo: ProvenanceRepository,
        p: RollbackRequested,
        projects: Collection[str] | None,
        *,
        lock: bool,
    ) -> RowMapping:
        """The record a targeted rollback names, within ``projects`` (None = any) and the
        event's ``project_id`` when given. An artifact id is its project's: without a record
        or a project, it must name an artifact of exactly one project."""
        row: RowMapping | None = None
        if p.provenance_id:
            try:
                row = await repo.get(uuid.UUID(p.provenance_id), for_update=lock)
            except ValueError:
                row = None
            if (
                row is None
                or (projects is not None and row["project_id"] not in projects)
                or (p.project_id and row["project_id"] != p.project_id)
            ):
                raise _rejected(f"provenance record {p.provenance_id} does not exist", "data.provenance_id")
        if not p.artifact_id:
            assert row is not None
            return row
        if row is not None:
            producer = (await repo.producers_of(row["project_id"], [p.artifact_id])).get(p.artifact_id)
            if producer != row["id"] and p.artifact_id not in output_artifact_ids(row["outputs"]):
                raise _rejected(
                    f"artifact {p.artifact_id} was not produced by record {p.provenance_id}",
                    "data.artifact_id",
                )
            return row
        scope = [p.project_id] if p.project_id else (None if projects is None else list(projects))
        if p.project_id and projects is not None and p.project_id not in projects:
            scope = []
        found = await repo.artifact_projects(p.artifact_id, scope) if scope != [] else []
        if len(found) > 1:
            raise _rejected(
                f"artifact {p.artifact_id} exists in several projects; give data.project_id",
                "data.project_id",
                "schema",
            )
        producer = (await repo.producers_of(found[0], [p.artifact_id])).get(p.artifact_id) if found else None
        row = await repo.get(producer, for_update=lock) if producer else None
        if row is None:
            raise _rejected(f"no provenance record produced artifact {p.artifact_id}", "data.artifact_id")
        return row

    async def apply_rollback(
        self, tx: Transaction, p: RollbackRequested, ce: CloudEvent, lifecycle: Lifecycle
    ) -> str:
        """Both forms may come in one event: the targeted part first, then the project part."""
        details: list[str] = []
        targeted = bool(p.artifact_id or p.provenance_id)
        if targeted:
            details.append(await self._rollback_targeted(tx, p, ce))
        if p.project_id and p.checkpoint_id:
            details.append(await self._rollback_project(tx, p, ce, lifecycle, own_cascade=not targeted))
        return "; ".join(details)

    async def _rollback_targeted(self, tx: Transaction, p: RollbackRequested, ce: CloudEvent) -> str:
        row = await self.rollback_target(ProvenanceRepository(tx.conn), p, None, lock=True)
        result = await self.taint_record(
            tx,
            row,
            reason=p.reason or "rollback requested",
            tainted_by=ce.source,
            cascade_id=p.cascade_id,
            source_artifact=p.artifact_id,
            event_id=ce.id,
        )
        if result.already_applied:
            return f"cascade {result.cascade_id} was already applied"
        return (
            f"record {row['id']} tainted (cascade {result.cascade_id}): "
            f"{result.suspect_count} suspect, {result.events_published} events"
        )

    async def _rollback_project(
        self,
        tx: Transaction,
        p: RollbackRequested,
        ce: CloudEvent,
        lifecycle: Lifecycle,
        *,
        own_cascade: bool,
    ) -> str:
        assert p.project_id and p.checkpoint_id
        repo = ProvenanceRepository(tx.conn)
        cp = await repo.get_checkpoint(p.checkpoint_id)
        if cp is None or cp["project_id"] != p.project_id:
            raise _rejected(
                f"checkpoint {p.checkpoint_id} of project {p.project_id} does not exist", "data.checkpoint_id"
            )
        # Rollback and cascade ids are the project's: another project's same id is another one.
        if p.rollback_id and await repo.cascade_by_rollback(p.project_id, p.rollback_id):
            return f"rollback {p.rollback_id} was already applied"
        cascade_id = (p.cascade_id if own_cascade else None) or p.rollback_id or str(uuid7())
        if await repo.cascade_known(p.project_id, cascade_id):
            return f"cascade {cascade_id} was already applied"
        now = utcnow()
        claimed = await repo.claim_cascade(
            {
                "id": cascade_id,
                "kind": "rollback",
                "rollback_id": p.rollback_id,
                "project_id": p.project_id,
                "checkpoint_id": p.checkpoint_id,
                "reason": p.reason,
                "requested_by": ce.source[:255],
                "event_id": ce.id,
                "created_at": now,
            }
        )
        if not claimed:
            return f"rollback {p.rollback_id or cascade_id} was already applied"
        after: datetime = cp["created_at"]
        seed = sa.select(pr.c.id).where(pr.c.project_id == p.project_id, pr.c.created_at > after)
        roots = list(
            (
                await tx.conn.execute(
                    sa.select(pr.c.id, pr.c.project_id, pr.c.outputs).where(
                        pr.c.project_id == p.project_id, pr.c.created_at > after
                    )
                )
            ).mappings()
        )
        result = await self._apply(
            tx,
            seed,
            roots,
            project_id=p.project_id,
            reason=ROLLED_BACK,
            tainted_by=f"rollback:{p.rollback_id or cascade_id}",
            cascade_id=cascade_id,
            source_artifact={},
        )
        why = f"rolled back to checkpoint {cp['id']}" + (f": {p.reason}" if p.reason else "")
        cancelled = await self._cancel_tasks(
            tx, lifecycle, p.project_id, after, reason=why, cause=f"event:rollback.requested:{ce.id}"
        )
        invalidated = await repo.invalidate_checkpoints_after(
            p.project_id, after, at=now, by=p.rollback_id or cascade_id
        )
        await repo.set_cascade_result(
            p.project_id,
            cascade_id,
            {
                **result.document(),
                "provenance_ids": [],
                "tasks_cancelled": cancelled,
                "checkpoints_invalidated": invalidated,
            },
        )
        return (
            f"project {p.project_id} rolled back to checkpoint {cp['id']} (cascade {cascade_id}): "
            f"{result.tainted_count} tainted, {result.suspect_count} suspect, "
            f"{cancelled} tasks cancelled, {invalidated} checkpoints invalidated"
        )

    async def _cancel_tasks(
        self,
        tx: Transaction,
        lifecycle: Lifecycle,
        project_id: str,
        after: datetime,
        *,
        reason: str,
        cause: str,
    ) -> int:
        """Cancel the project's unfinished tasks created or started after ``after``: parents
        first (their subtasks go with them), each re-read under lock."""
        stmt = (
            sa.select(tasks.c.id)
            .where(
                tasks.c.project_id == project_id,
                tasks.c.status.in_(CANCELLABLE),
                sa.or_(tasks.c.created_at > after, tasks.c.started_at > after),
            )
            .order_by(tasks.c.depth, tasks.c.created_at, tasks.c.id)
        )
        ids = [r[0] for r in await tx.conn.execute(stmt)]
        repo = unit_of_work(tx).tasks
        for task_id in ids:
            row = await repo.get(task_id, for_update=True)
            if row is None or TaskStatus(row["status"]) in FINAL_STATES:
                continue  # a parent's cancel took it along
            await lifecycle.cancel(unit_of_work(tx), row, reason=reason, cause=cause)
        cancelled = 0
        for task_id in ids:
            row = await repo.get(task_id)
            cancelled += row is not None and row["status"] == TaskStatus.CANCELLED.value
        return cancelled
