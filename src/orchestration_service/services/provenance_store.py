"""Provenance: who produced what, from which inputs. The facade the rest of the app uses.

A record is written in the same unit of work that completes a task, its inputs resolved to
the records that produced those artifacts, so the dependency graph grows from real work.
The use cases themselves live in ``services/provenance/``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

from orchestration_service.domain.lifecycle import FINAL_STATES, TaskStatus
from orchestration_service.domain.tasks import TaskRecord
from orchestration_service.repositories.ports import Storage, UnitOfWork
from orchestration_service.repositories.provenance.port import ProvenanceFilter, ProvenanceRecord
from orchestration_service.schemas.events import CloudEvent, RollbackRequested
from orchestration_service.services.lifecycle import Lifecycle
from orchestration_service.services.provenance import recording, rollback
from orchestration_service.services.provenance.queries import ProvenanceQueries
from orchestration_service.services.provenance.taint import TaintCascade


class _LifecycleCanceller:
    """``rollback.TaskCanceller`` in the event's unit of work, through the task lifecycle."""

    def __init__(self, uow: UnitOfWork, lifecycle: Lifecycle) -> None:
        self.uow = uow
        self.lifecycle = lifecycle

    async def cancel(self, task_id: uuid.UUID, *, reason: str, cause: str) -> None:
        task = await self.uow.tasks.get(task_id, for_update=True)
        if task is None or TaskStatus(task["status"]) in FINAL_STATES:
            return  # a parent's cancel took it along
        await self.lifecycle.cancel(self.uow, task, reason=reason, cause=cause)

    async def is_cancelled(self, task_id: uuid.UUID) -> bool:
        task = await self.uow.tasks.get(task_id)
        return task is not None and task["status"] == TaskStatus.CANCELLED.value


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
    ) -> Callable[[UnitOfWork, RollbackRequested, CloudEvent], Awaitable[str]]:
        """The ``EventProcessor.rollback`` hook (``rollback.requested``)."""

        async def apply(uow: UnitOfWork, payload: RollbackRequested, ce: CloudEvent) -> str:
            return await rollback.apply_rollback(uow, payload, ce, _LifecycleCanceller(uow, lifecycle))

        return apply

    async def check_rollback_scope(
        self, uow: UnitOfWork, payload: RollbackRequested, projects: Collection[str]
    ) -> RollbackRequested:
        """The ``EventProcessor.rollback_scope`` hook."""
        return await rollback.check_rollback_scope(uow, payload, projects)

    async def rollback_project(self, uow: UnitOfWork, p: RollbackRequested) -> str:
        """The ``EventProcessor.rollback_project`` hook: the project a rollback.requested is
        de-duplicated in."""
        return await rollback.rollback_project(uow, p)

    async def record_completion(
        self, uow: UnitOfWork, task: TaskRecord, validation: dict[str, Any]
    ) -> uuid.UUID:
        """Write the provenance record of a validated task and link it to its inputs."""
        return await recording.record_completion(uow, task, validation)
