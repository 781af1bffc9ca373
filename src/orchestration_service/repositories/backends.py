"""The one place that knows which implementations serve which database.

The composition root asks ``backend_for`` once, by the database URL; everything else
receives the chosen repositories through a unit of work (``repositories.storage``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from orchestration_service.db.engine import Database, Transaction
from orchestration_service.repositories.api_keys.port import ApiKeyRepository
from orchestration_service.repositories.api_keys.sql import PostgresApiKeys, SqliteApiKeys
from orchestration_service.repositories.dead_letters.port import DeadLetterRepository
from orchestration_service.repositories.dead_letters.sql import PostgresDeadLetters, SqliteDeadLetters
from orchestration_service.repositories.gauges.port import GaugeRepository
from orchestration_service.repositories.gauges.sql import PostgresGauges, SqliteGauges
from orchestration_service.repositories.outbox.port import LogFeed, OutboxRepository, RelayCoordination
from orchestration_service.repositories.outbox.postgres import PostgresLogFeed, PostgresRelayCoordination
from orchestration_service.repositories.outbox.sql import SqlOutbox
from orchestration_service.repositories.outbox.sqlite import SqliteLogFeed, SqliteRelayCoordination
from orchestration_service.repositories.processed_events.port import ProcessedEventRepository
from orchestration_service.repositories.processed_events.sql import (
    PostgresProcessedEvents,
    SqliteProcessedEvents,
)
from orchestration_service.repositories.projects.changes import LocalProjectChanges, PostgresProjectChanges
from orchestration_service.repositories.projects.port import ProjectChanges, ProjectRepository
from orchestration_service.repositories.projects.sql import PostgresProjects, SqliteProjects
from orchestration_service.repositories.provenance.port import ProvenanceRepository, TaintRepository
from orchestration_service.repositories.provenance.postgres import PostgresProvenance, PostgresTaint
from orchestration_service.repositories.provenance.sqlite import SqliteProvenance, SqliteTaint
from orchestration_service.repositories.provenance_import.port import ProvenanceImportRepository
from orchestration_service.repositories.provenance_import.postgres import PostgresProvenanceImport
from orchestration_service.repositories.provenance_import.sqlite import SqliteProvenanceImport
from orchestration_service.repositories.reviews.port import ReviewRepository
from orchestration_service.repositories.reviews.postgres import PostgresReviews
from orchestration_service.repositories.reviews.sqlite import SqliteReviews
from orchestration_service.repositories.tasks.port import TaskHotPaths, TaskRepository
from orchestration_service.repositories.tasks.postgres import PostgresHotPaths, PostgresTasks
from orchestration_service.repositories.tasks.sqlite import SqliteHotPaths, SqliteTasks
from orchestration_service.repositories.workers.port import WorkerRepository
from orchestration_service.repositories.workers.postgres import PostgresWorkers
from orchestration_service.repositories.workers.sqlite import SqliteWorkers


@dataclass(frozen=True, slots=True)
class Backend:
    """One implementation of every repository, each built from a transaction, and of every
    storage-level port, each built from the database."""

    name: str
    # Whether several server processes may share the database: they elect one outbox relay
    # (``relay_coordination``) through it, which SQLite's in-process coordination cannot do.
    many_processes: bool
    api_keys: Callable[[Transaction], ApiKeyRepository]
    outbox: Callable[[Transaction], OutboxRepository]
    processed_events: Callable[[Transaction], ProcessedEventRepository]
    relay_coordination: Callable[[Database], RelayCoordination]
    log_feed: Callable[[Database], LogFeed]
    tasks: Callable[[Transaction], TaskRepository]
    gauges: Callable[[Transaction], GaugeRepository]
    task_hot_paths: Callable[[Database], TaskHotPaths]
    provenance: Callable[[Transaction], ProvenanceRepository]
    taint: Callable[[Transaction], TaintRepository]
    provenance_import: Callable[[Transaction], ProvenanceImportRepository]
    reviews: Callable[[Transaction], ReviewRepository]
    workers: Callable[[Transaction], WorkerRepository]
    dead_letters: Callable[[Transaction], DeadLetterRepository]
    projects: Callable[[Transaction], ProjectRepository]
    project_changes: Callable[[Database], ProjectChanges]


POSTGRES = Backend(
    name="postgresql",
    many_processes=True,
    api_keys=PostgresApiKeys,
    outbox=SqlOutbox,
    processed_events=PostgresProcessedEvents,
    relay_coordination=PostgresRelayCoordination,
    log_feed=PostgresLogFeed,
    tasks=PostgresTasks,
    gauges=PostgresGauges,
    task_hot_paths=PostgresHotPaths,
    provenance=PostgresProvenance,
    taint=PostgresTaint,
    provenance_import=PostgresProvenanceImport,
    reviews=PostgresReviews,
    workers=PostgresWorkers,
    dead_letters=PostgresDeadLetters,
    projects=PostgresProjects,
    project_changes=PostgresProjectChanges,
)

SQLITE = Backend(
    name="sqlite",
    many_processes=False,
    api_keys=SqliteApiKeys,
    outbox=SqlOutbox,
    processed_events=SqliteProcessedEvents,
    relay_coordination=SqliteRelayCoordination,
    log_feed=SqliteLogFeed,
    tasks=SqliteTasks,
    gauges=SqliteGauges,
    task_hot_paths=SqliteHotPaths,
    provenance=SqliteProvenance,
    taint=SqliteTaint,
    provenance_import=SqliteProvenanceImport,
    reviews=SqliteReviews,
    workers=SqliteWorkers,
    dead_letters=SqliteDeadLetters,
    projects=SqliteProjects,
    project_changes=LocalProjectChanges,
)


def backend_for(database_url: str) -> Backend:
    scheme = database_url.split(":", 1)[0]
    if scheme.startswith("postgresql"):
        return POSTGRES
    if scheme.startswith("sqlite"):
        return SQLITE
    raise ValueError(f"no repositories for database URL scheme {scheme!r}")
