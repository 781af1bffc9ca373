"""Row -> response document conversions (plain dicts, serialised by orjson)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from orchestration_service.domain.tasks import HistoryRecord, TaskRecord


def task_document(
    t: TaskRecord,
    subtasks: Sequence[TaskRecord] = (),
    dependencies: Mapping[uuid.UUID, list[uuid.UUID]] | None = None,
) -> dict[str, Any]:
    deps = dependencies or {}
    return {
        "task_id": t["id"],
        "project_id": t["project_id"],
        "description": t["description"],
        "status": t["status"],
        "priority": t["priority"],
        "mode": t["mode"],
        "domain": t["domain"],
        "tier": t["tier"],
        "qa_profile": t["qa_profile"],
        "attempt": t["attempt"],
        "max_attempts": t["max_attempts"],
        "timeout_seconds": t["timeout_seconds"],
        "options": t["options"] or {},
        "parent_id": t["parent_id"],
        "depends_on": deps.get(t["id"], []),
        "subtasks": [
            {
                "task_id": s["id"],
                "status": s["status"],
                "description": s["description"],
                "depends_on": deps.get(s["id"], []),
            }
            for s in subtasks
        ],
        "created_at": t["created_at"],
        "updated_at": t["updated_at"],
        "started_at": t["started_at"],
        "completed_at": t["completed_at"],
        "deadline_at": t["deadline_at"],
        "execution_time_ms": t["execution_time_ms"],
        "artifacts": t["artifacts"] or [],
        "provenance_id": t["provenance_id"],
        "routing": t["routing"],
        "error": t["error"],
        "progress": t.get("progress"),
    }


def history_entry(h: HistoryRecord) -> dict[str, Any]:
    return {
        "id": h["id"],
        "task_id": h["task_id"],
        "from": h["from_status"],
        "to": h["to_status"],
        "reason": h["reason"],
        "cause": h["cause"],
        "attempt": h["attempt"],
        "details": h["details"],
        "time": h["created_at"],
    }


def provenance_document(r: Mapping[Any, Any]) -> dict[str, Any]:
    return {
        "id": r["id"],
        "task_id": r["task_id"],
        "project_id": r["project_id"],
        "status": r["status"],
        "model_used": r["model_used"],
        "worker_id": r["worker_id"],
        "tier": r["tier"],
        "domain": r["domain"],
        "created_at": r["created_at"],
        "started_at": r["started_at"],
        "completed_at": r["completed_at"],
        "tokens_input": r["tokens_input"],
        "tokens_output": r["tokens_output"],
        "execution_time_ms": r["execution_time_ms"],
        "confidence": float(r["confidence"]) if r["confidence"] is not None else None,
        "verification_status": r["verification_status"],
        "is_tainted": bool(r["is_tainted"]),
        "tainted_at": r["tainted_at"],
        "tainted_reason": r["tainted_reason"],
        "tainted_by": r["tainted_by"],
        "is_suspect": bool(r["is_suspect"]),
        "suspect_since": r["suspect_since"],
        "suspect_source": r["suspect_source"],
        "outputs": r["outputs"] or [],
        "inputs": r["inputs"] or [],
        "inputs_consumed": r["inputs_consumed"] or [],
        "execution": r["execution"] or {},
        "verification": r["verification"] or {},
        "metrics": r["metrics"] or {},
    }
