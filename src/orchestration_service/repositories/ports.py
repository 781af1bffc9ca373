"""What the use cases may ask of storage.

One Protocol per aggregate lives with its implementations (``repositories/<aggregate>/port.py``);
this module gathers them into the unit of work a use case runs in, and the storage that opens
units of work. Services import from here (and from the aggregates' ports), never from an
implementation: which backend runs is decided once, by ``repositories.backends``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from orchestration_service.repositories.api_keys.port import ApiKeyRepository
from orchestration_service.repositories.dead_letters.port import DeadLetterRepository
from orchestration_service.repositories.gauges.port import GaugeRepository
from orchestration_service.repositories.outbox.port import LogFeed, OutboxRepository, RelayCoordination
from orchestration_service.repositories.processed_events.port import ProcessedEventRepository
from orchestration_service.repositories.projects.port import ProjectChanges, ProjectRepository
from orchestration_service.repositories.provenance.port import ProvenanceRepository, TaintRepository
from orchestration_service.repositories.provenance_import.port import ProvenanceImportRepository
from orchestration_service.repositories.reviews.port import ReviewRepository
from orchestration_service.repositories.tasks.port import TaskHotPaths, TaskRepository
from orchestration_service.repositories.workers.port import WorkerRepository


class UnitOfWork(Protocol):
    """One transaction and the repositories that work inside it.

    Everything written through one unit of work commits together or not at all; hooks
    registered with ``after_commit`` run only once it has committed."""

    @property
    def api_keys(self) -> ApiKeyRepository: ...

    @property
    def outbox(self) -> OutboxRepository: ...

    @property
    def processed_events(self) -> ProcessedEventRepository: ...

    @property
    def tasks(self) -> TaskRepository: ...

    @property
    def gauges(self) -> GaugeRepository: ...

    @property
    def provenance(self) -> ProvenanceRepository: ...

    @property
    def taint(self) -> TaintRepository: ...

    @property
    def provenance_import(self) -> ProvenanceImportRepository: ...

    @property
    def reviews(self) -> ReviewRepository: ...

    @property
    def workers(self) -> WorkerRepository: ...

    @property
    def dead_letters(self) -> DeadLetterRepository: ...

    @property
    def projects(self) -> ProjectRepository: ...

    def after_commit(self, hook: Callable[[], None]) -> None: ...


class Storage(Protocol):
    """Opens units of work. ``transaction`` for use cases that write (or need one snapshot);
    ``read`` for reads in autocommit, each statement on its own (no BEGIN/COMMIT round trips)."""

    @property
    def name(self) -> str:
        """The backend's name ("postgresql" or "sqlite"), for logs and health answers only:
        never branch on it outside ``db/`` and ``repositories/``."""
        ...

    def transaction(self, *, write: bool = True) -> AbstractAsyncContextManager[UnitOfWork]: ...

    def read(self) -> AbstractAsyncContextManager[UnitOfWork]: ...

    async def ping(self) -> None:
        """Whether the database answers (raises when not), promptly: bounded in time, never
        waiting behind requests for a pooled connection."""
        ...

    def relay_coordination(self) -> RelayCoordination:
        """A new hold for one outbox relay (leadership, wake-ups, its own connections)."""
        ...

    def log_feed(self) -> LogFeed:
        """A new source of event-log wake-ups and reads for one process's feed fan-out."""
        ...

    def project_changes(self) -> ProjectChanges:
        """A new channel of project-change announcements between processes."""
        ...

    @property
    def task_hot_paths(self) -> TaskHotPaths:
        """Submission and status read, each its own transaction (no unit of work)."""
        ...
