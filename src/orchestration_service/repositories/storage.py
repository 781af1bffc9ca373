"""Units of work over the SQL database, with the backend's repositories."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from orchestration_service.db.engine import Database, Transaction
from orchestration_service.repositories.api_keys.port import ApiKeyRepository
from orchestration_service.repositories.backends import Backend, backend_for
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


class SqlUnitOfWork:
    """A transaction (or an autocommit read connection) and the backend's repositories,
    each built on first use."""

    __slots__ = ("_made", "backend", "tx")

    def __init__(self, tx: Transaction, backend: Backend) -> None:
        self.tx = tx
        self.backend = backend
        self._made: dict[str, Any] = {}

    def _repo(self, name: str) -> Any:
        repo = self._made.get(name)
        if repo is None:
            factory: Callable[[Transaction], Any] = getattr(self.backend, name)
            repo = self._made[name] = factory(self.tx)
        return repo

    @property
    def api_keys(self) -> ApiKeyRepository:
        repo: ApiKeyRepository = self._repo("api_keys")
        return repo

    @property
    def outbox(self) -> OutboxRepository:
        repo: OutboxRepository = self._repo("outbox")
        return repo

    @property
    def processed_events(self) -> ProcessedEventRepository:
        repo: ProcessedEventRepository = self._repo("processed_events")
        return repo

    @property
    def tasks(self) -> TaskRepository:
        repo: TaskRepository = self._repo("tasks")
        return repo

    @property
    def gauges(self) -> GaugeRepository:
        repo: GaugeRepository = self._repo("gauges")
        return repo

    @property
    def provenance(self) -> ProvenanceRepository:
        repo: ProvenanceRepository = self._repo("provenance")
        return repo

    @property
    def taint(self) -> TaintRepository:
        repo: TaintRepository = self._repo("taint")
        return repo

    @property
    def provenance_import(self) -> ProvenanceImportRepository:
        repo: ProvenanceImportRepository = self._repo("provenance_import")
        return repo

    @property
    def reviews(self) -> ReviewRepository:
        repo: ReviewRepository = self._repo("reviews")
        return repo

    @property
    def workers(self) -> WorkerRepository:
        repo: WorkerRepository = self._repo("workers")
        return repo

    @property
    def dead_letters(self) -> DeadLetterRepository:
        repo: DeadLetterRepository = self._repo("dead_letters")
        return repo

    @property
    def projects(self) -> ProjectRepository:
        repo: ProjectRepository = self._repo("projects")
        return repo

    def after_commit(self, hook: Callable[[], None]) -> None:
        self.tx.after_commit(hook)


class SqlStorage:
    """``Storage`` on a :class:`Database` (PostgreSQL or SQLite, chosen by its URL)."""

    def __init__(self, db: Database, backend: Backend | None = None) -> None:
        self.db = db
        self.backend = backend or backend_for(db.engine.url.render_as_string())
        self._task_hot_paths: TaskHotPaths | None = None

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def task_hot_paths(self) -> TaskHotPaths:
        if self._task_hot_paths is None:
            self._task_hot_paths = self.backend.task_hot_paths(self.db)
        return self._task_hot_paths

    @contextlib.asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator[SqlUnitOfWork]:
        async with self.db.transaction(write=write) as tx:
            yield SqlUnitOfWork(tx, self.backend)

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[SqlUnitOfWork]:
        async with self.db.read() as conn:
            # Autocommit, so there is no commit: reads register no after-commit hooks.
            yield SqlUnitOfWork(Transaction(conn), self.backend)

    async def ping(self) -> None:
        await self.db.ping()

    def relay_coordination(self) -> RelayCoordination:
        return self.backend.relay_coordination(self.db)

    def log_feed(self) -> LogFeed:
        return self.backend.log_feed(self.db)

    def project_changes(self) -> ProjectChanges:
        return self.backend.project_changes(self.db)


def unit_of_work(tx: Transaction) -> SqlUnitOfWork:
    """Transitional, while use cases move from ``Database`` to ``Storage``: the repositories
    of a transaction the caller opened itself."""
    return SqlUnitOfWork(tx, backend_for(tx.dialect))
