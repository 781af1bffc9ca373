"""Taint with its suspect cascade, clear-suspect and checkpoints.

A taint marks records tainted (verification status ``tainted``) and every record downstream
of them suspect (``suspect_since``, ``suspect_source`` = the tainted artifact it depends on).
Each change appends taint events (depth 0 at the tainted records, the distance for the
suspects, one ``cascade_id``) and publishes ``artifact.tainted`` / ``artifact.suspect``, one per
artifact, through the outbox: all in the caller's one unit of work. A cascade id is applied at
most once (``taint_cascades``): a repeated one answers with what it did the first time.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orchestration_service.db.errors import retry_conflicts
from orchestration_service.domain import events as ev
from orchestration_service.domain.errors import Forbidden, NotFound
from orchestration_service.domain.ids import uuid7
from orchestration_service.domain.provenance import artifacts_or_record, output_artifact_ids, primary_artifact
from orchestration_service.repositories.ports import Storage, UnitOfWork
from orchestration_service.repositories.provenance.port import (
    Cascade,
    Checkpoint,
    ProvenanceRecord,
    RecordSeed,
    SeedRecord,
    TaintEvent,
    TaintFlags,
    TaintRepository,
    TaintSeed,
)
from orchestration_service.services.lifecycle import emit, utcnow
from orchestration_service.services.provenance.common import parse_record_id, visible

CASCADE_MAX_DEPTH = 1000
"""How far a suspect cascade reaches: far beyond any real lineage (the Cascade Service's own
limit is 10), it only bounds the walk around cycles in bad data."""


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


def trail_entry(
    action: str,
    art: str,
    rid: uuid.UUID,
    project: str,
    why: str,
    depth: int,
    source: tuple[str, uuid.UUID] | None,
    cascade_id: str,
    now: datetime,
) -> tuple[TaintEvent, ev.OutgoingEvent]:
    """One taint-trail entry and its event (``artifact.tainted`` or ``artifact.suspect``)."""
    entry = TaintEvent(
        id=str(uuid7()),
        timestamp=now,
        artifact_id=art[:255],
        provenance_id=rid,
        reason=why,
        source_artifact_id=source[0] if source else None,
        source_provenance_id=source[1] if source else None,
        cascade_depth=depth,
        cascade_id=cascade_id,
        action=action,
        project_id=project,
    )
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
    return entry, event


async def existing(repo: TaintRepository, project: str, cascade_id: str) -> CascadeResult:
    """What an already applied cascade did (as it stored it, else counted from its trail)."""
    stored = await repo.get_cascade(project, cascade_id)
    doc = (stored.result if stored else None) or {}
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


async def apply_cascade(
    uow: UnitOfWork,
    seed: TaintSeed,
    roots: Sequence[SeedRecord],
    *,
    project_id: str,
    reason: str,
    tainted_by: str,
    cascade_id: str,
    source_artifact: dict[Any, str],
) -> CascadeResult:
    """Taint the seed records (``roots``, all of ``project_id``) and make everything
    downstream in the project suspect."""
    repo = uow.taint
    now = utcnow()
    await repo.mark_tainted(seed, at=now, reason=reason, tainted_by=tainted_by[:255])
    # A cascade stays in its project: an edge into another project's record can only be
    # legacy data from before artifact ids were scoped.
    targets = await repo.cascade_targets(seed, CASCADE_MAX_DEPTH, project_id)
    named = {r.id: source_artifact.get(r.id) or primary_artifact(r.outputs, r.id) for r in roots}
    suspects = [t for t in targets if not t.is_tainted]
    await repo.mark_suspect({t.id: named[t.source] for t in suspects}, at=now)

    entries = [
        trail_entry("taint", art, r.id, r.project_id, reason, 0, None, cascade_id, now)
        for r in roots
        for art in artifacts_or_record(r.outputs, r.id)
    ]
    for t in suspects:
        src = named[t.source]
        why, source = f"depends on tainted {src}", (src, t.source)
        entries.extend(
            trail_entry("suspect", art, t.id, t.project_id, why, t.depth, source, cascade_id, now)
            for art in artifacts_or_record(t.outputs, t.id)
        )
    out = [event for _, event in entries]
    await repo.add_taint_events([entry for entry, _ in entries])
    await emit(uow, out)
    return CascadeResult(
        cascade_id=cascade_id,
        provenance_ids=[r.id for r in roots],
        tainted_count=len(roots),
        suspect_count=len(suspects),
        max_depth=max((t.depth for t in suspects), default=0),
        events_published=len(out),
    )


async def taint_record(
    uow: UnitOfWork,
    record: ProvenanceRecord,
    *,
    reason: str,
    tainted_by: str,
    cascade_id: str | None = None,
    source_artifact: str | None = None,
    event_id: str | None = None,
) -> CascadeResult:
    """Taint one record (already read, locked on PostgreSQL) and cascade."""
    repo = uow.taint
    cascade_id = cascade_id or str(uuid7())
    project = record.project_id  # a cascade id is the tainted record's project's
    if await repo.cascade_known(project, cascade_id):
        return await existing(repo, project, cascade_id)
    claimed = await repo.claim_cascade(
        Cascade(
            id=cascade_id,
            kind="taint",
            project_id=project,
            provenance_id=record.id,
            reason=reason,
            requested_by=tainted_by[:255],
            event_id=event_id,
            created_at=utcnow(),
        )
    )
    if not claimed:
        return await existing(repo, project, cascade_id)
    result = await apply_cascade(
        uow,
        RecordSeed((record.id,)),
        [SeedRecord(record.id, project, record.outputs)],
        project_id=project,
        reason=reason,
        tainted_by=tainted_by,
        cascade_id=cascade_id,
        source_artifact={record.id: source_artifact} if source_artifact else {},
    )
    result.artifact_ids = output_artifact_ids(record.outputs)
    await repo.set_cascade_result(project, cascade_id, result.document())
    return result


async def inherit(uow: UnitOfWork, record: SeedRecord, upstream: dict[uuid.UUID, str]) -> bool:
    """A new record that consumed an artifact of a tainted or suspect record is suspect from
    the start, as if the cascade had reached it: every transitive dependent of a tainted
    record is suspect. ``upstream``: each record it depends on → the artifact it consumed
    from it. True if it became suspect.

    On PostgreSQL the upstream rows are read FOR SHARE: a taint of one of them that is
    committing is waited for and seen; one that starts later waits for this record's commit,
    and then finds it downstream."""
    if not upstream:
        return False
    repo = uow.taint
    flags = await repo.taint_flags(list(upstream))
    found: tuple[uuid.UUID, str, TaintFlags] | None = None
    for dep in sorted(upstream, key=str):
        f = flags.get(dep)
        if f is not None and f.is_tainted:
            found = (dep, upstream[dep], f)
            break
        if f is not None and f.is_suspect and found is None:
            found = (dep, upstream[dep], f)
    if found is None:
        return False
    dep, consumed, f = found
    last = await repo.last_trail_event(dep)
    if f.is_tainted:
        source, depth = (consumed, dep), 1
    else:
        # Suspect itself: the source is its own (the artifact first tainted), one step further.
        origin = last.source_provenance_id if last and last.source_provenance_id else dep
        source = (f.suspect_source or consumed, origin)
        depth = last.cascade_depth + 1 if last else 1
    cascade_id = last.cascade_id if last and last.cascade_id else str(uuid7())
    now = utcnow()
    await repo.mark_suspect({record.id: source[0]}, at=now)
    why = f"consumed {consumed}, which is {'tainted' if f.is_tainted else 'suspect'}"
    entries = [
        trail_entry("suspect", art, record.id, record.project_id, why, depth, source, cascade_id, now)
        for art in artifacts_or_record(record.outputs, record.id)
    ]
    await repo.add_taint_events([entry for entry, _ in entries])
    await emit(uow, [event for _, event in entries])
    return True


class TaintCascade:
    """The HTTP use cases, each in its own unit of work."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

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
            async with self.storage.transaction() as uow:
                record = await uow.provenance.get(rid, for_update=True)
                if record is None or not visible(record.project_id, project_ids):
                    raise NotFound(f"provenance record {record_id} does not exist")
                return await taint_record(
                    uow, record, reason=reason, tainted_by=tainted_by, cascade_id=cascade_id
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
        async with self.storage.transaction() as uow:
            record = await uow.provenance.get(rid, for_update=True)
            if record is None or not visible(record.project_id, project_ids):
                raise NotFound(f"provenance record {record_id} does not exist")
            if not record.is_suspect:
                return {"provenance_id": rid, "cleared": False, "cascade_id": None, "artifact_ids": []}
            last = await uow.taint.last_trail_event(rid, ("suspect",))
            cascade_id = last.cascade_id if last else str(uuid7())
            now = utcnow()
            text = reason or "revalidated"
            if cleared_by:
                text = f"{text} (cleared by {cleared_by})"
            artifacts = artifacts_or_record(record.outputs, rid)
            await uow.taint.clear_suspect(rid)
            await uow.taint.add_taint_events(
                [
                    TaintEvent(
                        id=str(uuid7()),
                        timestamp=now,
                        artifact_id=art,
                        provenance_id=rid,
                        reason=text,
                        source_artifact_id=record.suspect_source,
                        source_provenance_id=last.source_provenance_id if last else None,
                        cascade_depth=last.cascade_depth if last else 0,
                        cascade_id=cascade_id,
                        action="clear",
                        project_id=record.project_id,
                    )
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
    ) -> Checkpoint:
        if not visible(project_id, project_ids):
            raise Forbidden(f"this API key may not write to project {project_id}")
        async with self.storage.transaction() as uow:
            snapshot = await uow.taint.project_snapshot(project_id)
            checkpoint = Checkpoint(
                id=str(uuid7()),
                project_id=project_id,
                created_at=utcnow(),
                provenance_count=snapshot.provenance_count,
                artifact_count=snapshot.artifact_count,
                last_provenance_id=snapshot.last_provenance_id,
                last_task_id=snapshot.last_task_id,
                git_ref=git_ref,
                rag_state_ref=rag_state_ref,
                work_product_ref=work_product_ref,
                description=description,
                trigger=trigger,
            )
            await uow.taint.add_checkpoint(checkpoint)
        return checkpoint
