"""The legacy provenance import and export's storage: the port the use case sees, and one
implementation per backend."""

from orchestration_service.repositories.provenance_import.port import (
    GraphLinks,
    ImportedPart,
    LegacyRow,
    LegacyTable,
    ProvenanceImportRepository,
    RecordLinks,
)

__all__ = [
    "GraphLinks",
    "ImportedPart",
    "LegacyRow",
    "LegacyTable",
    "ProvenanceImportRepository",
    "RecordLinks",
]
