"""What the legacy provenance import and export may ask of storage.

Rows cross this port in the domain's legacy mapping (one key per column, as
``domain.provenance.parse_record``/``parse_taint_event``/``parse_checkpoint`` build them and
the ``export_*`` functions read them): the domain owns that shape, the port only stores it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

# A provenance_records, taint_events or checkpoints row (column -> value).
LegacyRow = Mapping[str, Any]
LegacyTable = Literal["records", "taint_events", "checkpoints"]
# What an import wrote, for statistics: a legacy table, or the graph (artifacts, dependencies,
# unresolved inputs).
ImportedPart = Literal["records", "graph", "taint_events", "checkpoints"]


@dataclass(frozen=True, slots=True)
class RecordLinks:
    """What one imported record produced and used: the graph is resolved from these."""

    record_id: uuid.UUID
    project_id: str
    created_at: datetime
    output_ids: tuple[str, ...]
    # (artifact id, relationship) of each input
    input_refs: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class GraphLinks:
    """What resolving added: artifact -> producer rows, and dependency edges."""

    artifacts_added: int
    dependencies_added: int


class ProvenanceImportRepository(Protocol):
    async def stored(self, table: LegacyTable, ids: Sequence[Any]) -> dict[Any, LegacyRow]:
        """The stored rows among ``ids`` (record ids are UUIDs, the others strings), by id."""
        ...

    async def insert(self, table: LegacyTable, rows: Sequence[LegacyRow]) -> None:
        """New rows (their ids are not stored yet), in as few round trips as the backend allows."""
        ...

    async def update(self, table: LegacyTable, rows: Sequence[LegacyRow]) -> None:
        """Overwrite every column of stored rows, by id."""
        ...

    async def forget_links(self, record_ids: Sequence[uuid.UUID]) -> None:
        """Drop what the graph knows of these records' own content (the artifacts they
        produced, the edges to what they used, their unresolved inputs): their files changed,
        and linking them again rebuilds it from the new content."""
        ...

    async def link(self, links: Sequence[RecordLinks]) -> GraphLinks:
        """Resolve the graph of these records, set-based and idempotent (a re-run repairs an
        interrupted one): per project, the earliest producer of an artifact owns it; an input
        becomes an edge to the record of its own project that produced it, else it is kept as
        unresolved; inputs left unresolved earlier (by an import or the service) that these
        records produced become edges too."""
        ...

    async def projects_of(self, record_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        """The project of each stored record among ``record_ids``."""
        ...

    async def refresh_statistics(self, part: ImportedPart) -> None:
        """Planner statistics of one part after a bulk load (and on PostgreSQL the visibility
        map, so counts and graph walks read the indexes alone). Runs outside a transaction:
        call it in a ``Storage.read()`` unit of work; parts may be refreshed concurrently, and
        while another part is written."""
        ...

    # -- export ---------------------------------------------------------------------------------
    async def count_records(self, project_id: str | None) -> int: ...

    async def records_after(
        self, project_id: str | None, after: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> Sequence[LegacyRow]:
        """Records (of one project, or all) in (created_at, id) order, after a key (keyset)."""
        ...

    async def taint_events_in_order(self, project_id: str | None) -> Sequence[LegacyRow]:
        """Every taint event in time order; of one time, in the imported file's order, then by id."""
        ...

    async def checkpoints_after(
        self, project_id: str | None, after: tuple[datetime, str] | None, limit: int
    ) -> Sequence[LegacyRow]:
        """Checkpoints in (created_at, id) order, after a key (keyset)."""
        ...
