"""The one place that knows which implementations serve which database.

The composition root asks ``backend_for`` once, by the database URL; everything else
receives the chosen repositories through a unit of work (``repositories.storage``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from orchestration_service.db.engine import Transaction
from orchestration_service.repositories.api_keys.port import ApiKeyRepository
from orchestration_service.repositories.api_keys.sql import PostgresApiKeys, SqliteApiKeys
from orchestration_service.repositories.outbox.port import OutboxRepository
from orchestration_service.repositories.outbox.sql import SqlOutbox
from orchestration_service.repositories.processed_events.port import ProcessedEventRepository
from orchestration_service.repositories.processed_events.sql import (
    PostgresProcessedEvents,
    SqliteProcessedEvents,
)
from orchestration_service.repositories.provenance_import.port import ProvenanceImportRepository
from orchestration_service.repositories.provenance_import.postgres import PostgresProvenanceImport
from orchestration_service.repositories.provenance_import.sqlite import SqliteProvenanceImport


@dataclass(frozen=True, slots=True)
class Backend:
    """One implementation of every repository, each built from a transaction."""

    name: str
    api_keys: Callable[[Transaction], ApiKeyRepository]
    outbox: Callable[[Transaction], OutboxRepository]
    processed_events: Callable[[Transaction], ProcessedEventRepository]
    provenance_import: Callable[[Transaction], ProvenanceImportRepository]


POSTGRES = Backend(
    name="postgresql",
    api_keys=PostgresApiKeys,
    outbox=SqlOutbox,
    processed_events=PostgresProcessedEvents,
    provenance_import=PostgresProvenanceImport,
)

SQLITE = Backend(
    name="sqlite",
    api_keys=SqliteApiKeys,
    outbox=SqlOutbox,
    processed_events=SqliteProcessedEvents,
    provenance_import=SqliteProvenanceImport,
)


def backend_for(database_url: str) -> Backend:
    scheme = database_url.split(":", 1)[0]
    if scheme.startswith("postgresql"):
        return POSTGRES
    if scheme.startswith("sqlite"):
        return SQLITE
    raise ValueError(f"no repositories for database URL scheme {scheme!r}")
