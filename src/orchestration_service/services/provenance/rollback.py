"""``rollback.requested``: a targeted rollback taints the record (or the producer of the
artifact) it names and cascades; a project rollback to a checkpoint taints every record of the
project created after it, cancels the tasks begun since, and invalidates later checkpoints.
Both run inside the event's unit of work (the event processor's)."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Protocol

from orchestration_service.domain.errors import EventRejected
from orchestration_service.domain.ids import uuid7
from orchestration_service.domain.lifecycle import TaskStatus
from orchestration_service.domain.provenance import output_artifact_ids
from orchestration_service.repositories.ports import UnitOfWork
from orchestration_service.repositories.provenance.port import (
    Cascade,
    ProjectSince,
    ProvenanceRecord,
    ProvenanceRepository,
)
from orchestration_service.schemas.events import CloudEvent, RollbackRequested
from orchestration_service.services.lifecycle import utcnow
from orchestration_service.services.provenance.taint import apply_cascade, taint_record

ROLLED_BACK = "rolled_back"
CANCELLABLE = [
    TaskStatus.PENDING.value,
    TaskStatus.DECOMPOSING.value,
    TaskStatus.RUNNING.value,
    TaskStatus.VALIDATING.value,
]


class TaskCanceller(Protocol):
    """Cancels tasks in the rollback's unit of work (the task lifecycle's side)."""

    async def cancel(self, task_id: uuid.UUID, *, reason: str, cause: str) -> None:
        """Cancel the task, re-read under lock, unless it is already final (subtasks go along)."""
        ...

    async def is_cancelled(self, task_id: uuid.UUID) -> bool: ...


def _rejected(reason: str, field_name: str, kind: str = "unknown-record") -> Exception:
    return EventRejected(kind, reason, field=field_name)


async def rollback_target(
    repo: ProvenanceRepository, p: RollbackRequested, projects: Collection[str] | None, *, lock: bool
) -> ProvenanceRecord:
    """The record a targeted rollback names, within ``projects`` (None = any) and the event's
    ``project_id`` when given. An artifact id is its project's: without a record or a project,
    it must name an artifact of exactly one project."""
    record: ProvenanceRecord | None = None
    if p.provenance_id:
        try:
            record = await repo.get(uuid.UUID(p.provenance_id), for_update=lock)
        except ValueError:
            record = None
        if (
            record is None
            or (projects is not None and record.project_id not in projects)
            or (p.project_id and record.project_id != p.project_id)
        ):
            raise _rejected(f"provenance record {p.provenance_id} does not exist", "data.provenance_id")
    if not p.artifact_id:
        assert record is not None
        return record
    if record is not None:
        producer = (await repo.producers_of(record.project_id, [p.artifact_id])).get(p.artifact_id)
        if producer != record.id and p.artifact_id not in output_artifact_ids(record.outputs):
            raise _rejected(
                f"artifact {p.artifact_id} was not produced by record {p.provenance_id}", "data.artifact_id"
            )
        return record
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
    record = await repo.get(producer, for_update=lock) if producer else None
    if record is None:
        raise _rejected(f"no provenance record produced artifact {p.artifact_id}", "data.artifact_id")
    return record


async def check_rollback_scope(
    uow: UnitOfWork, p: RollbackRequested, projects: Collection[str]
) -> RollbackRequested:
    """Refuse a rollback that names a record, artifact or checkpoint outside ``projects``, in
    the words used when it does not exist (nothing tells the two apart). Returns it with the
    record it targets named (resolved within ``projects``), so that applying it does not look
    beyond them."""
    if p.artifact_id or p.provenance_id:
        record = await rollback_target(uow.provenance, p, projects, lock=False)
        p = p.model_copy(update={"provenance_id": str(record.id)})
    if p.project_id and p.checkpoint_id and p.project_id not in projects:
        raise _rejected(
            f"checkpoint {p.checkpoint_id} of project {p.project_id} does not exist", "data.checkpoint_id"
        )
    return p


async def rollback_project(uow: UnitOfWork, p: RollbackRequested) -> str:
    """The project a rollback.requested is de-duplicated in: the named record's, else the
    producer's of the named artifact, else its ``project_id``; a named record or artifact that
    does not exist is refused as the rollback itself would refuse it (before the event is
    claimed)."""
    if p.artifact_id or p.provenance_id:
        return (await rollback_target(uow.provenance, p, None, lock=False)).project_id
    assert p.project_id  # the schema: targeted, or project_id with checkpoint_id
    return p.project_id


async def apply_rollback(uow: UnitOfWork, p: RollbackRequested, ce: CloudEvent, tasks: TaskCanceller) -> str:
    """Both forms may come in one event: the targeted part first, then the project part."""
    details: list[str] = []
    targeted = bool(p.artifact_id or p.provenance_id)
    if targeted:
        details.append(await _rollback_targeted(uow, p, ce))
    if p.project_id and p.checkpoint_id:
        details.append(await _rollback_project(uow, p, ce, tasks, own_cascade=not targeted))
    return "; ".join(details)


async def _rollback_targeted(uow: UnitOfWork, p: RollbackRequested, ce: CloudEvent) -> str:
    record = await rollback_target(uow.provenance, p, None, lock=True)
    result = await taint_record(
        uow,
        record,
        reason=p.reason or "rollback requested",
        tainted_by=ce.source,
        cascade_id=p.cascade_id,
        source_artifact=p.artifact_id,
        event_id=ce.id,
    )
    if result.already_applied:
        return f"cascade {result.cascade_id} was already applied"
    return (
        f"record {record.id} tainted (cascade {result.cascade_id}): "
        f"{result.suspect_count} suspect, {result.events_published} events"
    )


async def _rollback_project(
    uow: UnitOfWork, p: RollbackRequested, ce: CloudEvent, tasks: TaskCanceller, *, own_cascade: bool
) -> str:
    assert p.project_id and p.checkpoint_id
    repo = uow.taint
    cp = await repo.get_checkpoint(p.checkpoint_id)
    if cp is None or cp.project_id != p.project_id:
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
        Cascade(
            id=cascade_id,
            kind="rollback",
            rollback_id=p.rollback_id,
            project_id=p.project_id,
            checkpoint_id=p.checkpoint_id,
            reason=p.reason,
            requested_by=ce.source[:255],
            event_id=ce.id,
            created_at=now,
        )
    )
    if not claimed:
        return f"rollback {p.rollback_id or cascade_id} was already applied"
    after: datetime = cp.created_at
    seed = ProjectSince(p.project_id, after)
    result = await apply_cascade(
        uow,
        seed,
        await repo.seed_records(seed),
        project_id=p.project_id,
        reason=ROLLED_BACK,
        tainted_by=f"rollback:{p.rollback_id or cascade_id}",
        cascade_id=cascade_id,
        source_artifact={},
    )
    why = f"rolled back to checkpoint {cp.id}" + (f": {p.reason}" if p.reason else "")
    # Parents first (their subtasks go with them), each re-read under lock.
    ids = await uow.tasks.cancellable_since(p.project_id, after, CANCELLABLE)
    for task_id in ids:
        await tasks.cancel(task_id, reason=why, cause=f"event:rollback.requested:{ce.id}")
    cancelled = sum([await tasks.is_cancelled(task_id) for task_id in ids])
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
        f"project {p.project_id} rolled back to checkpoint {cp.id} (cascade {cascade_id}): "
        f"{result.tainted_count} tainted, {result.suspect_count} suspect, "
        f"{cancelled} tasks cancelled, {invalidated} checkpoints invalidated"
    )
