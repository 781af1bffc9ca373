"""Provenance: who produced what, from which inputs.

A record is written in the same transaction that completes a task, its inputs resolved to
the records that produced those artifacts, so the dependency graph grows from real work.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import RowMapping

from orchestration_service.db.engine import Database, Transaction
from orchestration_service.domain.ids import uuid7
from orchestration_service.domain.provenance import parse_timestamp
from orchestration_service.repositories import provenance_pg
from orchestration_service.repositories.ports import UnitOfWork
from orchestration_service.repositories.provenance import ProvenanceFilter, ProvenanceRepository
from orchestration_service.services.lifecycle import Lifecycle, utcnow
from orchestration_service.services.provenance_graph import ProvenanceQueries
from orchestration_service.services.taint import TaintCascade

if TYPE_CHECKING:
    from orchestration_service.schemas.events import CloudEvent, RollbackRequested

ARTIFACT_TYPES = {"code", "document", "config", "analysis", "architecture"}


def _artifact_type(value: Any) -> str:
    return value if value in ARTIFACT_TYPES else "code"


class ProvenanceStore:
    """The provenance facade the routers and event handlers use: ``queries`` (read side:
    listings, graph, consistency) and ``cascade`` (taint, clear-suspect, checkpoints,
    rollbacks)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.queries = ProvenanceQueries(db)
        self.cascade = TaintCascade(db)

    async def get(self, record_id: uuid.UUID, *, project_ids: Sequence[str] | None = None) -> RowMapping:
        return await self.queries.get(record_id, project_ids=project_ids)

    async def list(self, f: ProvenanceFilter, *, limit: int, offset: int) -> tuple[Sequence[RowMapping], int]:
        page = await self.queries.find(f, limit=limit, offset=offset)
        return page.rows, page.total

    def rollback_handler(
        self, lifecycle: Lifecycle
    ) -> Callable[[UnitOfWork, RollbackRequested, CloudEvent], Awaitable[str]]:
        """The ``EventProcessor.rollback`` hook (``rollback.requested``)."""
        return self.cascade.rollback_handler(lifecycle)

    async def check_rollback_scope(
        self, uow: UnitOfWork, payload: RollbackRequested, projects: Collection[str]
    ) -> RollbackRequested:
        """The ``EventProcessor.rollback_scope`` hook."""
        return await self.cascade.check_rollback_scope(bridge_tx(uow), payload, projects)

    async def rollback_project(self, uow: UnitOfWork, p: RollbackRequested) -> str:
        """The ``EventProcessor.rollback_project`` hook: the project a rollback.requested is
        de-duplicated in. The named record's, else the producer's of the named artifact, else
        its ``project_id``; a named record or artifact that does not exist is refused as the
        rollback itself would refuse it (before the event is claimed)."""
        if p.artifact_id or p.provenance_id:
            tx = bridge_tx(uow)
            row = await self.cascade.rollback_target(ProvenanceRepository(tx.conn), p, None, lock=False)
            return str(row["project_id"])
        assert p.project_id  # the schema: targeted, or project_id with checkpoint_id
        return p.project_id

    async def record_completion(
        self, uow: UnitOfWork, task: dict[str, Any], validation: dict[str, Any]
    ) -> uuid.UUID:
        """Write the provenance record of a validated task and link it to its inputs."""
        tx = bridge_tx(uow)
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
                # The event's time is kept in `metrics` as ISO text; the column wants a datetime.
                "started_at": parse_timestamp(metrics.get("started_at")) or task.get("started_at"),
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
        project = task["project_id"]
        if tx.is_postgres:
            await provenance_pg.claim_outputs(await tx.driver(), project, record_id, produced)
        else:
            known = await repo.producers_of(project, produced)
            # An artifact id names one producing record of its project; a re-produced id keeps
            # its first producer.
            mine = [a for a in dict.fromkeys(produced) if a not in known]
            await repo.add_artifacts(project, record_id, mine)
            # Earlier records (imported ones, say) that used these artifacts now depend on this one.
            await repo.resolve_waiting(project, record_id, mine)
        # Inputs resolve within the project only: another project's artifact of the same id
        # is not this one.
        producers = await repo.producers_of(project, [i["artifact_id"] for i in inputs])
        await repo.add_unresolved(
            project,
            record_id,
            list(
                {
                    i["artifact_id"]: i["relationship"] for i in inputs if i["artifact_id"] not in producers
                }.items()
            ),
        )
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
        # Consumed from a tainted or suspect record: suspect from the start.
        upstream: dict[uuid.UUID, str] = {}
        for dep, art in sorted(edges, key=lambda e: (str(e[0]), e[1])):
            upstream.setdefault(dep, art)
        await self.cascade.inherit(
            tx, {"id": record_id, "project_id": task["project_id"], "outputs": outputs}, upstream
        )
        return record_id


def bridge_tx(uow: UnitOfWork) -> Transaction:
    """Bridge (issue 17, tasks moved first): the task use cases hand over a unit of work;
    the provenance code still works on its transaction until it has ports of its own."""
    tx: Transaction = uow.tx  # type: ignore[attr-defined]
    return tx
