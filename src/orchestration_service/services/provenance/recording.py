"""Recording a validated task's provenance, in the unit of work that completes the task: the
record, the artifacts it produced, its inputs resolved to the records that produced them (or
kept as unresolved), and, when one of those is tainted or suspect, suspect from the start."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from orchestration_service.domain.ids import uuid7
from orchestration_service.domain.provenance import ARTIFACT_TYPES, parse_timestamp
from orchestration_service.domain.tasks import TaskRecord
from orchestration_service.repositories.ports import UnitOfWork
from orchestration_service.repositories.provenance.port import Edge, ProvenanceRecord, SeedRecord
from orchestration_service.services.lifecycle import utcnow
from orchestration_service.services.provenance.taint import inherit


def _artifact_type(value: Any) -> str:
    return value if value in ARTIFACT_TYPES else "code"


def _constitution_used(task: TaskRecord) -> dict[str, Any]:
    """The constitution the worker was given: the project's (its version and hash) or the
    submission's override (its text too: it exists nowhere else)."""
    sent = (task.get("context") or {}).get("constitution")
    if not sent:
        return {}
    used = dict(sent)
    if used.get("source") == "override":
        used["text"] = (task.get("options") or {}).get("constitution_override")
    return {"constitution": used}


async def record_completion(uow: UnitOfWork, task: TaskRecord, validation: dict[str, Any]) -> uuid.UUID:
    """Write the provenance record of a validated task and link it to its inputs."""
    repo = uow.provenance
    metrics = task.get("metrics") or {}
    artifacts = task.get("artifacts") or []
    now = utcnow()
    record_id = uuid7()
    outputs = [
        {
            "artifact_id": a.get("id"),
            "type": _artifact_type(a.get("type")),
            "location": a.get("location") or a.get("path") or "",
            "checksum": a.get("checksum") or "",
            "size_bytes": int(a.get("size_bytes") or 0),
        }
        for a in artifacts
    ]
    inputs = [
        {
            "artifact_id": i["artifact_id"],
            "relationship": i.get("relationship", "consumed"),
            "version_at_consumption": i.get("version_at_consumption") or i.get("version") or "",
        }
        for i in (task.get("context") or {}).get("inputs", []) + list(metrics.get("inputs") or [])
        if i.get("artifact_id")
    ]
    confidence = validation.get("confidence")
    verification = {
        "status": "passed",
        "qa_profile": validation.get("qa_profile") or task.get("qa_profile") or "",
        "qa_result_id": validation.get("qa_result_id") or "",
        "verified_at": now.isoformat(),
        "verified_by": validation.get("verified_by") or "qa-service",
        "details": {**(validation.get("details") or {}), "confidence": confidence},
    }
    project = task["project_id"]
    await repo.insert(
        ProvenanceRecord(
            id=record_id,
            task_id=str(task["id"]),
            project_id=project,
            status="completed",
            model_used=metrics.get("model_used"),
            worker_id=metrics.get("worker_id"),
            tier=task.get("tier"),
            domain=task.get("domain"),
            created_at=now,
            # The event's time is kept in `metrics` as ISO text; the column wants a datetime.
            started_at=parse_timestamp(metrics.get("started_at")) or task.get("started_at"),
            completed_at=now,
            tokens_input=metrics.get("tokens_input"),
            tokens_output=metrics.get("tokens_output"),
            execution_time_ms=metrics.get("execution_time_ms"),
            confidence=Decimal(str(round(float(confidence), 2))) if confidence is not None else None,
            verification_status="passed",
            outputs=outputs,
            inputs=inputs,
            inputs_consumed=[i["artifact_id"] for i in inputs],
            execution={
                "model": metrics.get("model_used") or "",
                "worker_id": metrics.get("worker_id") or "",
                "prompt_template": metrics.get("prompt_template") or {},
                "parameters": metrics.get("parameters") or {},
                **_constitution_used(task),
            },
            verification=verification,
            metrics={
                "tokens_input": metrics.get("tokens_input") or 0,
                "tokens_output": metrics.get("tokens_output") or 0,
                "execution_time_ms": metrics.get("execution_time_ms") or 0,
            },
        )
    )
    # An artifact id names one producing record of its project (a re-produced id keeps its
    # first producer); earlier records (imported ones, say) that used these artifacts now
    # depend on this one.
    await repo.claim_outputs(project, record_id, [str(o["artifact_id"]) for o in outputs if o["artifact_id"]])
    # Inputs resolve within the project only: another project's artifact of the same id is
    # not this one.
    producers = await repo.producers_of(project, [i["artifact_id"] for i in inputs])
    await repo.add_unresolved(
        project,
        record_id,
        list(
            {i["artifact_id"]: i["relationship"] for i in inputs if i["artifact_id"] not in producers}.items()
        ),
    )
    edges = {
        (producers[i["artifact_id"]], i["artifact_id"]): i["relationship"]
        for i in inputs
        if i["artifact_id"] in producers and producers[i["artifact_id"]] != record_id
    }
    await repo.add_dependencies(
        [
            Edge(artifact_id=record_id, depends_on=dep, via_artifact_id=art, dependency_type=rel)
            for (dep, art), rel in edges.items()
        ]
    )
    # Consumed from a tainted or suspect record: suspect from the start.
    upstream: dict[uuid.UUID, str] = {}
    for dep, art in sorted(edges, key=lambda e: (str(e[0]), e[1])):
        upstream.setdefault(dep, art)
    await inherit(uow, SeedRecord(record_id, project, outputs), upstream)
    return record_id
