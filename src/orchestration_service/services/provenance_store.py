"""Provenance: who produced what, from which inputs. The facade the rest of the app uses.

A record is written in the same unit of work that completes a task, its inputs resolved to
the records that produced those artifacts, so the dependency graph grows from real work.
The use cases themselves live in ``services/provenance/``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

from orchestration_service.db.engine import Transaction
from orchestration_service.domain.lifecycle import FINAL_STATES, TaskStatus
from orchestration_service.repositories.ports import Storage
from orchestration_service.repositories.provenance.port import ProvenanceFilter, ProvenanceRecord
from orchestration_service.repositories.storage import unit_of_work
from orchestration_service.repositories.tasks import TaskRepository
from orchestration_service.schemas.events import CloudEvent, RollbackRequested
from orchestration_service.services.lifecycle import Lifecycle
from orchestration_service.services.provenance import recording, rollback
from orchestration_service.services.provenance.queries import ProvenanceQueries
from orchestration_service.services.provenance.taint import TaintCascade

# TRANSITIONAL (until the event processor and Lifecycle work on a UnitOfWork, H1's merge):
# the hooks below still receive the processor's raw ``Transaction`` and wrap it with
# ``unit_of_work(tx)``; task cancellation goes through Lifecycle.cancel(tx, row) and the
# tasks repository on that transaction. Afterwards they take the UnitOfWork directly and these
# imports (db.engine, repositories.storage, repositories.tasks) go.


class _LifecycleCanceller:
    """``rollback.TaskCanceller`` on the event's transaction, through the task lifecycle."""

    def __init__(self, tx: Transaction, lifecycle: Lifecycle) -> None:
        self.tx = tx
        self.lifecycle = lifecycle
        self.tasks = TaskRepository(tx.conn)

    async def cancel(self, task_id: uuid.UUID, *, reason: str, cause: str) -> None:
        row = await self.tasks.get(task_id, for_update=True)
        if row is None or TaskStatus(row["status"]) in FINAL_STATES:
            return  # a parent's cancel took it along
        await self.lifecycle.cancel(self.tx, dict(row), reason=reason, cause=cause)

    async def is_cancelled(self, task_id: uuid.UUID) -> bool:
        row = await self.tasks.get(task_id)
        return row is not None and row["status"] == TaskStatus.CANCELLED.value


class ProvenanceStore:
    """The provenance facade the routers and event handlers use: ``queries`` (read side:
    listings, graph, consistency) and ``cascade`` (taint, clear-suspect, checkpoints);
    rollbacks and recording run inside the event's unit of work."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.queries = ProvenanceQueries(storage)
        self.cascade = TaintCascade(storage)

    async def get(
        self, record_id: uuid.UUID, *, project_ids: Sequence[str] | None = None
    ) -> ProvenanceRecord:
        return await self.queries.get(record_id, project_ids=project_ids)

    async def list(
        self, f: ProvenanceFilter, *, limit: int, offset: int
    ) -> tuple[Sequence[ProvenanceRecord], int]:
        page = await self.queries.find(f, limit=limit, offset=offset)
        return page.rows, page.total

    def rollback_handler(
        self, lifecycle: Lifecycle
    ) -> Callable[[Transaction, RollbackRequested, CloudEvent], Awaitable[str]]:
        """The ``EventProcessor.rollback`` hook (``rollback.requested``)."""

        async def apply(tx: Transaction, payload: RollbackRequested, ce: CloudEvent) -> str:
            return await rollback.apply_rollback(
                unit_of_work(tx), payload, ce, _LifecycleCanceller(tx, lifecycle)
            )

        return apply

    async def check_rollback_scope(
        self, tx: Transaction, payload: RollbackRequested, projects: Collection[str]
    ) -> RollbackRequested:
        """The ``EventProcessor.rollback_scope`` hook."""
        return await rollback.check_rollback_scope(unit_of_work(tx), payload, projects)

    async def rollback_project(self, tx: Transaction, p: RollbackRequested) -> str:
        """The ``EventProcessor.rollback_project`` hook: the project a rollback.requested is
        de-duplicated in."""
        return await rollback.rollback_project(unit_of_work(tx), p)

    async def record_completion(
        self, tx: Transaction, task: dict[str, Any], validation: dict[str, Any]
    ) -> uuid.UUID:
        """Write the provenance record of a validated task and link it to its inputs."""
        return await recording.record_completion(unit_of_work(tx), task, validation)
