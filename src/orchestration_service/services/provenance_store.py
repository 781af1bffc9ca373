"""Provenance: who produced what, from which inputs.

A record is written in the same transaction that completes a task, its inputs resolved to
the records that produced those artifacts, so the dependency graph grows from real work.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy.engine import RowMapping

from orchestration_service.db.engine import Database, Transaction
from orchestration_service.domain.errors import NotFound
from orchestration_service.domain.ids import uuid7
from orchestration_service.repositories.provenance import ProvenanceFilter, ProvenanceRepository
from orchestration_service.services.lifecycle import utcnow

ARTIFACT_TYPES = {"code", "document", "config", "analysis", "architecture"}


def _artifact_type(value: Any) -> str:
    return value if value in ARTIFACT_TYPES else "code"


class ProvenanceStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, record_id: uuid.UUID, *, project_ids: Sequence[str] | None = None) -> RowMapping:
        async with self.db.read() as conn:
            row = await ProvenanceRepository(conn).get(record_id)
        if row is None or (project_ids is not None and row["project_id"] not in project_ids):
            raise NotFound(f"provenance record {record_id} does not exist")
        return row

    async def list(self, f: ProvenanceFilter, *, limit: int, offset: int) -> tuple[Sequence[RowMapping], int]:
        async with self.db.read() as conn:
            repo = ProvenanceRepository(conn)
            return await repo.find(f, limit=limit, offset=offset), await repo.count(f)

    async def record_completion(
        self, tx: Transaction, task: dict[str, Any], validation: dict[str, Any]
    ) -> uuid.UUID:
        """Write the provenance record of a validated task and link it to its inputs."""
        repo = ProvenanceRepository(tx.conn)
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
        await repo.insert(
            {
                "id": record_id,
                "task_id": str(task["id"]),
                "project_id": task["project_id"],
                "status": "completed",
                "model_used": metrics.get("model_used"),
                "worker_id": metrics.get("worker_id"),
                "tier": task.get("tier"),
                "domain": task.get("domain"),
                "created_at": now,
                "started_at": metrics.get("started_at") or task.get("started_at"),
                "completed_at": now,
                "tokens_input": metrics.get("tokens_input"),
                "tokens_output": metrics.get("tokens_output"),
                "execution_time_ms": metrics.get("execution_time_ms"),
                "confidence": Decimal(str(round(float(confidence), 2))) if confidence is not None else None,
                "verification_status": "passed",
                "outputs": outputs,
                "inputs": inputs,
                "inputs_consumed": [i["artifact_id"] for i in inputs],
                "execution": {
                    "model": metrics.get("model_used") or "",
                    "worker_id": metrics.get("worker_id") or "",
                    "prompt_template": metrics.get("prompt_template") or {},
                    "parameters": metrics.get("parameters") or {},
                },
                "verification": verification,
                "metrics": {
                    "tokens_input": metrics.get("tokens_input") or 0,
                    "tokens_output": metrics.get("tokens_output") or 0,
                    "execution_time_ms": metrics.get("execution_time_ms") or 0,
                },
            }
        )
        produced = [o["artifact_id"] for o in outputs if o["artifact_id"]]
        known = await repo.producers_of(produced)
        # An artifact id names one producing record; a re-produced id keeps its first producer.
        await repo.add_artifacts(record_id, [a for a in dict.fromkeys(produced) if a not in known])
        producers = await repo.producers_of([i["artifact_id"] for i in inputs])
        edges = {
            (producers[i["artifact_id"]], i["artifact_id"]): i["relationship"]
            for i in inputs
            if i["artifact_id"] in producers and producers[i["artifact_id"]] != record_id
        }
        await repo.add_dependencies(
            [
                {"artifact_id": record_id, "depends_on": dep, "dependency_type": rel, "via_artifact_id": art}
                for (dep, art), rel in edges.items()
            ]
        )
        return record_id
