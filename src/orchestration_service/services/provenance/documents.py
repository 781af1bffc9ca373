"""The answer documents of records, taint-trail entries and checkpoints (the routers send
them as they are; the graph answers are built in ``graph``)."""

from __future__ import annotations

from typing import Any

from orchestration_service.repositories.provenance.port import Checkpoint, ProvenanceRecord, TaintEvent


def record_document(r: ProvenanceRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "task_id": r.task_id,
        "project_id": r.project_id,
        "status": r.status,
        "model_used": r.model_used,
        "worker_id": r.worker_id,
        "tier": r.tier,
        "domain": r.domain,
        "created_at": r.created_at,
        "started_at": r.started_at,
        "completed_at": r.completed_at,
        "tokens_input": r.tokens_input,
        "tokens_output": r.tokens_output,
        "execution_time_ms": r.execution_time_ms,
        "confidence": float(r.confidence) if r.confidence is not None else None,
        "verification_status": r.verification_status,
        "is_tainted": bool(r.is_tainted),
        "tainted_at": r.tainted_at,
        "tainted_reason": r.tainted_reason,
        "tainted_by": r.tainted_by,
        "is_suspect": bool(r.is_suspect),
        "suspect_since": r.suspect_since,
        "suspect_source": r.suspect_source,
        "outputs": r.outputs or [],
        "inputs": r.inputs or [],
        "inputs_consumed": r.inputs_consumed or [],
        "execution": r.execution or {},
        "verification": r.verification or {},
        "metrics": r.metrics or {},
    }


def taint_event_document(r: TaintEvent) -> dict[str, Any]:
    return {
        "id": r.id,
        "timestamp": r.timestamp,
        "artifact_id": r.artifact_id,
        "provenance_id": r.provenance_id,
        "reason": r.reason,
        "source_artifact_id": r.source_artifact_id,
        "source_provenance_id": r.source_provenance_id,
        "cascade_depth": r.cascade_depth,
        "cascade_id": r.cascade_id,
        "action": r.action,
        "project_id": r.project_id,
    }


def checkpoint_document(r: Checkpoint) -> dict[str, Any]:
    return {
        "id": r.id,
        "project_id": r.project_id,
        "created_at": r.created_at,
        "git_ref": r.git_ref,
        "provenance_count": r.provenance_count,
        "artifact_count": r.artifact_count,
        "last_provenance_id": r.last_provenance_id,
        "last_task_id": r.last_task_id,
        "rag_state_ref": r.rag_state_ref,
        "work_product_ref": r.work_product_ref,
        "description": r.description,
        "trigger": r.trigger,
        "is_valid": r.is_valid,
        "invalidated_at": r.invalidated_at,
        "invalidated_by": r.invalidated_by,
    }
