"""The provenance record of a decomposed task, written when its last subtask completes.

A parent produced nothing itself: its record has no outputs, and its inputs are its
subtasks' records (each subtask's artifacts, with the record that holds them). In the graph
the parent's record depends on each subtask's record, so a taint of any subtask's work makes
every ancestor above it suspect, and a subtask already suspect makes the new record suspect
from the start. A middle task's record is such a record too: the top task's inputs are its
direct subtasks' records, not the leaves'."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from orchestration_service.domain.ids import uuid7
from orchestration_service.domain.tasks import TaskRecord
from orchestration_service.repositories.ports import UnitOfWork
from orchestration_service.repositories.provenance.port import Edge, ProvenanceRecord, SeedRecord
from orchestration_service.services.provenance.taint import inherit

VERIFIED_BY = "subtasks"


async def record_parent_completion(
    uow: UnitOfWork, parent: TaskRecord, children: Sequence[TaskRecord]
) -> uuid.UUID:
    """Write ``parent``'s record, its inputs the records of ``children`` (all completed)."""
    now = datetime.now(UTC)
    record_id = uuid7()
    inputs: list[dict[str, str]] = []
    upstream: dict[uuid.UUID, str] = {}
    for child in children:
        child_record = child.get("provenance_id")
        if child_record is None:
            continue
        arts = [str(a.get("id")) for a in child.get("artifacts") or [] if a.get("id")]
        upstream.setdefault(child_record, arts[0] if arts else "")
        for art in arts or [""]:
            inputs.append(
                {
                    "artifact_id": art,
                    "relationship": "consumed",
                    "version_at_consumption": "",
                    "provenance_id": str(child_record),
                    "task_id": str(child["id"]),
                }
            )
    started = parent.get("started_at") or parent["created_at"]
    elapsed = int((now - started).total_seconds() * 1000)
    project = parent["project_id"]
    await uow.provenance.insert(
        ProvenanceRecord(
            id=record_id,
            task_id=str(parent["id"]),
            project_id=project,
            status="completed",
            model_used=None,
            worker_id=None,
            tier=parent.get("tier"),
            domain=parent.get("domain"),
            created_at=now,
            started_at=started,
            completed_at=now,
            tokens_input=None,
            tokens_output=None,
            execution_time_ms=elapsed,
            confidence=None,
            verification_status="passed",
            outputs=[],
            inputs=inputs,
            inputs_consumed=[i["artifact_id"] for i in inputs if i["artifact_id"]],
            execution={"model": "", "worker_id": "", "prompt_template": {}, "parameters": {}},
            verification={
                "status": "passed",
                "qa_profile": parent.get("qa_profile") or "",
                "qa_result_id": "",
                "verified_at": now.isoformat(),
                "verified_by": VERIFIED_BY,
                "details": {"subtasks": len(children)},
            },
            metrics={"tokens_input": 0, "tokens_output": 0, "execution_time_ms": elapsed},
        )
    )
    await uow.provenance.add_dependencies(
        [
            Edge(record_id, depends_on=dep, via_artifact_id=art or None, dependency_type="consumed")
            for dep, art in upstream.items()
        ]
    )
    await inherit(uow, SeedRecord(record_id, project, []), upstream)
    return record_id
