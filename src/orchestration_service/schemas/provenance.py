"""Provenance API shapes beyond the record itself: graph answers, taint, taint events,
checkpoints and the consistency report (handlers return plain dicts; these document them)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from orchestration_service.schemas.common import NO_NUL

Text = Annotated[str, StringConstraints(max_length=4000, pattern=NO_NUL)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=NO_NUL)]


class VerificationStatus(StrEnum):
    PENDING = "pending"
    PASSED = "passed"
    FAILED = "failed"
    HUMAN_APPROVED = "human_approved"
    TAINTED = "tainted"
    SUSPECT = "suspect"


class TaintAction(StrEnum):
    TAINT = "taint"
    SUSPECT = "suspect"
    CLEAR = "clear"
    ESCALATE = "escalate"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- requests --------------------------------------------------------------------------------
class TaintRequest(_Body):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=4000, pattern=NO_NUL)]
    tainted_by: Name = Field("api", description="Who found it bad (a person, a service).")
    cascade_id: Name | None = Field(
        None,
        description="The caller's cascade id: applied once; repeating it answers with the first result.",
    )


class ClearSuspectRequest(_Body):
    reason: Text | None = Field(None, description="Why it is no longer suspect (default `revalidated`).")
    cleared_by: Name | None = None


class CheckpointCreate(_Body):
    git_ref: Text = ""
    rag_state_ref: Text = ""
    work_product_ref: Text = ""
    description: Text = ""
    trigger: Literal["auto", "manual", "milestone"] = "manual"


# -- responses -------------------------------------------------------------------------------
class GraphRecord(BaseModel):
    id: uuid.UUID
    task_id: str
    project_id: str
    created_at: datetime
    verification_status: str
    is_tainted: bool
    is_suspect: bool
    artifact_ids: list[str] = Field(..., description="The artifacts the record produced.")
    depth: int = Field(..., description="Edges from the record asked about (its smallest distance).")


class Lineage(BaseModel):
    provenance_id: uuid.UUID
    artifact_ids: list[str]
    depth_limit: int = Field(..., description="The `max_depth` asked for.")
    max_depth: int = Field(..., description="The deepest record found.")
    truncated: bool = Field(
        ...,
        description="The answer is cut: records exist beyond `depth_limit`, or more than `limit` were found.",
    )
    total: int = Field(..., description="Upstream records found within `depth_limit` (not only `items`).")
    limit: int = Field(..., description="The `limit` asked for: at most this many `items`.")
    items: list[GraphRecord] = Field(..., description="Upstream records, nearest first, at most `limit`.")


class TaskInFlight(BaseModel):
    task_id: uuid.UUID
    project_id: str
    status: str


class Impact(BaseModel):
    provenance_id: uuid.UUID
    artifact_id: str = Field(..., description="The record's first artifact (its id if it has none).")
    artifact_ids: list[str]
    direct_dependents: list[str] = Field(
        ..., description="Artifacts of the records of `items` at depth 1, at most `limit`."
    )
    transitive_dependents: list[str] = Field(
        ..., description="Artifacts of the records of `items` deeper than 1, at most `limit`."
    )
    total_affected: int = Field(..., description="Downstream records (all of them, not only `items`).")
    depth_limit: int
    max_depth: int
    truncated: bool = Field(
        ...,
        description=(
            "The answer is cut: records exist beyond `depth_limit`, or a list "
            "(`items`, the dependents, `tasks_in_flight`) had more than `limit` entries."
        ),
    )
    limit: int = Field(..., description="The `limit` asked for: at most this many entries per list.")
    items: list[GraphRecord] = Field(..., description="Downstream records, nearest first, at most `limit`.")
    tasks_in_flight: list[TaskInFlight] = Field(
        ...,
        description=(
            "Unfinished tasks (pending, decomposing, running, validating) that depend through "
            "task dependencies, directly or transitively, on the task of this record or of a "
            "downstream one: they will consume affected artifacts. At most `limit`."
        ),
    )
    in_flight_by_project: dict[str, int] = Field(
        ..., description="Unfinished tasks of each project that has this or a downstream record."
    )


class RootCause(BaseModel):
    failed_artifact_id: str
    failed_provenance_id: uuid.UUID
    immediate_cause: str | None = Field(..., description="Artifact of the nearest tainted record upstream.")
    immediate_cause_provenance_id: uuid.UUID | None
    root_cause: str | None = Field(..., description="Artifact of the earliest tainted record upstream.")
    root_cause_provenance_id: uuid.UUID | None
    path: list[str] = Field(..., description="Artifacts from the root cause down to the failed one.")
    path_provenance_ids: list[uuid.UUID]
    depth: int


class Consistency(BaseModel):
    project_id: str
    total_records: int
    tainted_count: int
    suspect_count: int
    pending_revalidation: int = Field(..., description="Suspect records not tainted: awaiting revalidation.")
    orphaned_artifacts: int = Field(
        ..., description="Artifact ids the project's records used that no record in the store produced."
    )
    affected_ratio: float = Field(..., description="Tainted or suspect records / all records.")
    recommended_action: Literal["continue", "pause", "rollback"] = Field(
        ...,
        description=(
            "`rollback` when tainted or suspect records are ≥ 30 % of the project's records (the "
            "Cascade Service's project impact ratio); `pause` when there is any; else `continue`."
        ),
    )


class TaintResult(BaseModel):
    cascade_id: str
    provenance_ids: list[uuid.UUID] = Field(..., description="The tainted records.")
    artifact_ids: list[str] = Field(..., description="The tainted record's artifacts.")
    tainted_count: int
    suspect_count: int
    max_depth: int = Field(..., description="The deepest suspect record.")
    events_published: int
    already_applied: bool = Field(..., description="The cascade id was applied before: nothing changed.")


class ClearSuspectResult(BaseModel):
    provenance_id: uuid.UUID
    cleared: bool = Field(..., description="False when the record was not suspect (nothing changed).")
    cascade_id: str | None
    artifact_ids: list[str]


class TaintEvent(BaseModel):
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


class TaintEventPage(BaseModel):
    items: list[TaintEvent]
    total: int = Field(description="Entries matching the filters, counted up to 10,000 (see `total_capped`).")
    total_capped: bool = Field(
        False,
        description="More match than `total` says: the count stopped at 10,000 (page on with `cursor`).",
    )
    limit: int
    offset: int
    next_cursor: str | None = Field(..., description="Pass as `cursor` for the next page; null at the end.")


class Checkpoint(BaseModel):
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
    is_valid: bool
    invalidated_at: datetime | None
    invalidated_by: str | None = Field(..., description="The rollback that invalidated it.")


class CheckpointPage(BaseModel):
    items: list[Checkpoint]
    total: int
    limit: int
    offset: int
