"""What the use cases may ask of the provenance store: the records and their dependency graph
(``ProvenanceRepository``), and the taint trail, cascades and checkpoints
(``TaintRepository``). What crosses the port is a typed record, never a database row."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Protocol

Direction = Literal["down", "up"]


@dataclass(slots=True)
class ProvenanceRecord:
    """One provenance record: who produced what, from which inputs (``outputs`` and the other
    documents are the JSON values)."""

    id: uuid.UUID
    task_id: str
    project_id: str
    created_at: datetime
    status: str = "completed"
    model_used: str | None = None
    worker_id: str | None = None
    tier: str | None = None
    domain: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    tokens_input: int | None = None
    tokens_output: int | None = None
    execution_time_ms: int | None = None
    confidence: Decimal | None = None
    verification_status: str = "pending"
    is_tainted: bool = False
    tainted_at: datetime | None = None
    tainted_reason: str | None = None
    tainted_by: str | None = None
    is_suspect: bool = False
    suspect_since: datetime | None = None
    suspect_source: str | None = None
    outputs: Any = None
    inputs: Any = None
    inputs_consumed: Any = None
    execution: Any = None
    verification: Any = None
    metrics: Any = None
    extra: Any = None


@dataclass(frozen=True, slots=True)
class RecordSummary:
    """A record as the graph answers name it; ``outputs`` is parsed JSON."""

    id: uuid.UUID
    task_id: str
    project_id: str
    created_at: datetime
    verification_status: str
    is_tainted: bool
    is_suspect: bool
    outputs: Any


class GraphNode(Protocol):
    """A record reached by a walk, at its distance (``depth``; the root at 0). ``outputs`` is
    the JSON *text* (parsed only for the records an answer lists), None when not asked for.

    A Protocol, not one class: the widest walks read thousands of nodes, and PostgreSQL's
    implementation answers with the driver's rows themselves (no copy per row)."""

    @property
    def depth(self) -> int: ...
    @property
    def id(self) -> uuid.UUID: ...
    @property
    def task_id(self) -> str: ...
    @property
    def project_id(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def verification_status(self) -> str: ...
    @property
    def is_tainted(self) -> bool: ...
    @property
    def is_suspect(self) -> bool: ...
    @property
    def outputs(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class GraphNodeRecord:
    """A ``GraphNode`` as a plain record (SQLite's answer, and fakes')."""

    depth: int
    id: uuid.UUID
    task_id: str
    project_id: str
    created_at: datetime
    verification_status: str
    is_tainted: bool
    is_suspect: bool
    outputs: str | None


@dataclass(frozen=True, slots=True)
class GraphWalk:
    nodes: Sequence[GraphNode]  # nearest first (then oldest); empty when the root does not exist
    truncated: bool  # the depth limit cut the walk: a record at the limit has an unreached neighbour


@dataclass(frozen=True, slots=True)
class ImpactWalk:
    """What the unscoped impact answer reads (:meth:`ProvenanceRepository.impact`)."""

    nodes: Sequence[GraphNode]  # the root and the nearest ``listed`` records; empty: no root
    total: int  # records reached below the root
    max_depth: int  # the distance of the farthest (0: none)
    truncated: bool  # as GraphWalk's
    waiting: list[WaitingTask]  # as ``waiting_tasks`` of every record reached (root included)
    in_flight_by_project: dict[str, int]  # as ``in_flight_by_project`` of their projects


@dataclass(frozen=True, slots=True)
class ReachedRecord:
    """A record reached by the root-cause walk: its distance, and its summary only when it is
    tainted (the others' rows are not read: ``is_tainted`` is None for them)."""

    id: uuid.UUID
    depth: int
    task_id: str | None
    project_id: str | None
    created_at: datetime | None
    verification_status: str | None
    is_tainted: bool | None
    is_suspect: bool | None
    outputs: Any


@dataclass(frozen=True, slots=True)
class Edge:
    artifact_id: uuid.UUID  # the dependent record
    depends_on: uuid.UUID
    via_artifact_id: str | None
    dependency_type: str | None = None


@dataclass(frozen=True, slots=True)
class WaitingTask:
    id: uuid.UUID
    project_id: str
    status: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ProvenanceFilter:
    project_ids: Sequence[str] | None = None
    task_id: str | None = None
    artifact_id: str | None = None
    verification_status: str | None = None
    is_tainted: bool | None = None
    is_suspect: bool | None = None
    model_used: str | None = None
    worker_id: str | None = None
    tier: str | None = None
    domain: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


@dataclass(frozen=True, slots=True)
class TaintEventFilter:
    project_ids: Sequence[str] | None = None
    cascade_id: str | None = None
    provenance_id: uuid.UUID | None = None
    artifact_id: str | None = None
    action: str | None = None


class ProvenanceRepository(Protocol):
    """Records, the artifacts they produced, their dependencies, and the graph walks."""

    async def get(self, record_id: uuid.UUID, *, for_update: bool = False) -> ProvenanceRecord | None:
        """``for_update``: locked (PostgreSQL) until the unit of work ends."""
        ...

    async def summary(self, record_id: uuid.UUID) -> RecordSummary | None: ...

    async def get_many(self, record_ids: Sequence[uuid.UUID]) -> list[ProvenanceRecord]: ...

    async def find(
        self,
        f: ProvenanceFilter,
        *,
        limit: int,
        offset: int = 0,
        after: tuple[datetime, uuid.UUID] | None = None,
    ) -> Sequence[ProvenanceRecord]:
        """Newest first; ``after`` (the last row of the previous page) is the keyset cursor."""
        ...

    async def count(self, f: ProvenanceFilter, *, cap: int | None = None) -> int:
        """How many records match, counting no further than ``cap`` + 1."""
        ...

    async def insert(self, record: ProvenanceRecord) -> None: ...

    async def add_artifacts(
        self, project_id: str, record_id: uuid.UUID, artifact_ids: Sequence[str]
    ) -> None: ...

    async def producers_of(self, project_id: str, artifact_ids: Sequence[str]) -> dict[str, uuid.UUID]:
        """The record of ``project_id`` that produced each of these artifacts (an artifact id
        is its project's)."""
        ...

    async def artifact_projects(self, artifact_id: str, project_ids: Sequence[str] | None) -> list[str]:
        """The projects (of these; None = all) that have a producer of this artifact id."""
        ...

    async def add_dependencies(self, edges: Sequence[Edge]) -> None: ...

    async def add_unresolved(
        self, project_id: str, record_id: uuid.UUID, inputs: Sequence[tuple[str, str]]
    ) -> None:
        """Inputs (artifact id, relationship) no record of the project produced yet."""
        ...

    async def claim_outputs(
        self, project_id: str, record_id: uuid.UUID, produced: Sequence[str]
    ) -> list[str]:
        """A new record produces these artifacts: each id not yet produced in the project
        becomes this record's (a re-produced id keeps its first producer), and earlier records
        that used one of them, waiting as unresolved inputs, get their dependency edge on this
        one. Returns the artifact ids now this record's."""
        ...

    async def graph(
        self, root: uuid.UUID, direction: Direction, max_depth: int, *, listed: int | None = None
    ) -> GraphWalk:
        """The root record (depth 0) and every record reachable from it within ``max_depth``
        edges (``down``: dependents, ``up``: dependencies), once, at its distance, nearest
        first (then oldest). ``listed``: ``outputs`` only for the first ``listed`` + 1 nodes
        (the others' are None). Unscoped: a path may pass through any project."""
        ...

    async def impact(
        self, root: uuid.UUID, max_depth: int, *, listed: int, statuses: Sequence[str]
    ) -> ImpactWalk:
        """``graph(root, "down", max_depth)`` and the task queries over every record reached
        (``statuses``: in flight); as nodes only the root and the nearest ``listed`` records."""
        ...

    async def reached_tainted(
        self, root: uuid.UUID, direction: Direction, max_depth: int, project_id: str
    ) -> list[ReachedRecord]:
        """The root record (depth 0) and every record reachable from it through records of
        ``project_id``, each with its distance, nearest first; summaries of the tainted ones."""
        ...

    async def edges_between(self, record_ids: Sequence[uuid.UUID]) -> list[Edge]:
        """Edges whose dependent is one of these records (to rebuild a path)."""
        ...

    # Task queries the impact answer needs. They read the tasks tables: the lead may move them
    # to the tasks repository (H1's) once it has a port.
    async def waiting_tasks(
        self, record_ids: Sequence[uuid.UUID], statuses: Sequence[str], project_ids: Sequence[str] | None
    ) -> list[WaitingTask]:
        """Tasks in these statuses that depend, through task_dependencies (transitively), on a
        task whose provenance record is one of these; oldest first."""
        ...

    async def in_flight_by_project(
        self, project_ids: Sequence[str], statuses: Sequence[str]
    ) -> dict[str, int]:
        """How many tasks of each project are in these statuses (projects with none left out)."""
        ...


@dataclass(frozen=True, slots=True)
class RecordSeed:
    """The records a taint starts from, by id. One id (the usual taint) walks from it alone;
    several walk from all at once, each record reached naming the seed it is nearest to."""

    record_ids: tuple[uuid.UUID, ...]


@dataclass(frozen=True, slots=True)
class ProjectSince:
    """The records a taint starts from: the project's records created after a time (a rollback)."""

    project_id: str
    after: datetime


TaintSeed = RecordSeed | ProjectSince


@dataclass(frozen=True, slots=True)
class SeedRecord:
    id: uuid.UUID
    project_id: str
    outputs: Any


@dataclass(frozen=True, slots=True)
class CascadeTarget:
    """A record downstream of a taint's seed: its distance and the seed it is nearest to."""

    id: uuid.UUID
    depth: int
    source: uuid.UUID
    project_id: str
    outputs: Any
    is_tainted: bool


@dataclass(frozen=True, slots=True)
class TaintFlags:
    id: uuid.UUID
    is_tainted: bool
    is_suspect: bool
    suspect_source: str | None


@dataclass(frozen=True, slots=True)
class TaintEvent:
    """One entry of the taint trail."""

    id: str
    timestamp: datetime
    artifact_id: str
    provenance_id: uuid.UUID | None
    reason: str
    source_artifact_id: str | None
    source_provenance_id: uuid.UUID | None
    cascade_depth: int
    cascade_id: str
    action: str
    project_id: str | None
    seq: int | None = None
    extra: Any = None


@dataclass(frozen=True, slots=True)
class Cascade:
    """An applied taint or rollback (its id is its project's): applied at most once."""

    id: str
    kind: str  # taint | rollback
    project_id: str
    created_at: datetime
    rollback_id: str | None = None
    provenance_id: uuid.UUID | None = None
    checkpoint_id: str | None = None
    reason: str | None = None
    requested_by: str | None = None
    event_id: str | None = None
    result: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    id: str
    project_id: str
    created_at: datetime
    git_ref: str
    provenance_count: int
    artifact_count: int
    last_provenance_id: str
    last_task_id: str
    rag_state_ref: str
    work_product_ref: str
    description: str
    trigger: str
    is_valid: bool = True
    invalidated_at: datetime | None = None
    invalidated_by: str | None = None
    extra: Any = None


@dataclass(frozen=True, slots=True)
class ProjectCounts:
    total: int
    tainted: int
    suspect: int
    affected: int  # tainted or suspect
    pending_revalidation: int  # suspect, not tainted


@dataclass(frozen=True, slots=True)
class ProjectSnapshot:
    """What a new checkpoint records: counts and the newest record."""

    provenance_count: int
    artifact_count: int
    last_provenance_id: str
    last_task_id: str


class TaintRepository(Protocol):
    """Taint marks and their cascade, the taint trail, applied cascades, checkpoints, and the
    project figures built on them."""

    async def seed_records(self, seed: TaintSeed) -> list[SeedRecord]: ...

    async def mark_tainted(
        self, seed: TaintSeed, *, at: datetime, reason: str, tainted_by: str | None
    ) -> None:
        """Mark the seed records tainted (PostgreSQL: rows locked in id order, so two cascades
        over common records queue instead of deadlocking)."""
        ...

    async def cascade_targets(self, seed: TaintSeed, max_depth: int, project_id: str) -> list[CascadeTarget]:
        """Every record of ``project_id`` downstream of the seed records (not re-entering
        them), with its distance and the seed record it is nearest to."""
        ...

    async def mark_suspect(self, sources: dict[uuid.UUID, str], *, at: datetime) -> None:
        """Mark these records suspect, each with its source (the tainted artifact)."""
        ...

    async def clear_suspect(self, record_id: uuid.UUID) -> None: ...

    async def taint_flags(self, record_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, TaintFlags]:
        """PostgreSQL: read FOR SHARE, in id order: a taint being applied to one of them is
        waited for, and one not yet begun waits for the caller's commit."""
        ...

    async def add_taint_events(self, events: Sequence[TaintEvent]) -> None: ...

    async def find_taint_events(
        self, f: TaintEventFilter, *, limit: int, offset: int = 0, after: tuple[datetime, str] | None = None
    ) -> Sequence[TaintEvent]:
        """Newest first; ``after`` is the keyset cursor."""
        ...

    async def count_taint_events(self, f: TaintEventFilter, *, cap: int | None = None) -> int: ...

    async def last_trail_event(
        self, record_id: uuid.UUID, actions: Sequence[str] = ("taint", "suspect")
    ) -> TaintEvent | None:
        """The record's latest trail entry of these actions."""
        ...

    async def cascade_known(self, project_id: str, cascade_id: str) -> bool:
        """A cascade of this project already applied here, or imported from the legacy files."""
        ...

    async def claim_cascade(self, cascade: Cascade) -> bool:
        """Insert the cascade; False when its id (or rollback id) was already claimed in its
        project. On PostgreSQL a concurrent claim of the same id waits for the first."""
        ...

    async def set_cascade_result(self, project_id: str, cascade_id: str, result: dict[str, Any]) -> None: ...

    async def get_cascade(self, project_id: str, cascade_id: str) -> Cascade | None: ...

    async def cascade_by_rollback(self, project_id: str, rollback_id: str) -> Cascade | None: ...

    async def cascade_summary(self, project_id: str, cascade_id: str) -> dict[str, int]:
        """Per trail action, how many distinct records the cascade touched."""
        ...

    async def project_counts(self, project_id: str) -> ProjectCounts: ...

    async def orphaned_inputs(self, project_id: str) -> int:
        """Distinct artifact ids the project's records used that no record of it produced."""
        ...

    async def project_snapshot(self, project_id: str) -> ProjectSnapshot: ...

    async def get_checkpoint(self, checkpoint_id: str) -> Checkpoint | None: ...

    async def add_checkpoint(self, checkpoint: Checkpoint) -> None: ...

    async def list_checkpoints(
        self, project_id: str, *, include_invalid: bool, limit: int, offset: int
    ) -> tuple[Sequence[Checkpoint], int]:
        """Newest first, and how many there are in all."""
        ...

    async def invalidate_checkpoints_after(
        self, project_id: str, after: datetime, *, at: datetime, by: str
    ) -> int: ...
