"""Provenance records, their dependency graph, the taint trail, cascades and checkpoints:
the ports the use cases see (``port``), one implementation per backend (``postgres``,
``sqlite``, on the shared statements of ``records``, ``trail`` and ``walks``)."""

from orchestration_service.repositories.provenance.port import (
    Cascade,
    CascadeTarget,
    Checkpoint,
    Direction,
    Edge,
    GraphNode,
    GraphWalk,
    ImpactWalk,
    ProjectCounts,
    ProjectSince,
    ProjectSnapshot,
    ProvenanceFilter,
    ProvenanceRecord,
    ProvenanceRepository,
    ReachedRecord,
    RecordSeed,
    RecordSummary,
    SeedRecord,
    TaintEvent,
    TaintEventFilter,
    TaintFlags,
    TaintRepository,
    TaintSeed,
    WaitingTask,
)

# TRANSITIONAL: services/provenance_migration.py (H3's, replaced by repositories/provenance_import/)
# imports this from here; drop it with that module.
from orchestration_service.repositories.provenance.walks import insert_ignoring_conflicts

__all__ = [
    "Cascade",
    "CascadeTarget",
    "Checkpoint",
    "Direction",
    "Edge",
    "GraphNode",
    "GraphWalk",
    "ImpactWalk",
    "ProjectCounts",
    "ProjectSince",
    "ProjectSnapshot",
    "ProvenanceFilter",
    "ProvenanceRecord",
    "ProvenanceRepository",
    "ReachedRecord",
    "RecordSeed",
    "RecordSummary",
    "SeedRecord",
    "TaintEvent",
    "TaintEventFilter",
    "TaintFlags",
    "TaintRepository",
    "TaintSeed",
    "WaitingTask",
    "insert_ignoring_conflicts",
]
