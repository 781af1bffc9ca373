"""Typed answers of the project routes (``/api/v1/projects...``): the project, its
constitution and status, its provenance health and checkpoints. Same rules as ``models``
(written by hand, checked against ``contracts/openapi.yaml`` by
tests/unit/test_client_models.py, unknown fields kept); a module of their own so that
``models`` stays readable."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from orchestration_service.client.models import Model


class ProjectSummary(Model):
    """A project with its task counts (an item of ``list_projects``; schema ``ProjectSummary``)."""

    project_id: str
    name: str | None = None
    archived: bool = False
    counts: dict[str, int]
    total: int
    in_flight: int
    max_concurrent: int


class ProjectList(Model):
    items: list[ProjectSummary]


class EffectiveSetting(Model):
    """A setting in effect and where it comes from (``project``, ``configuration``, ``routing``)."""

    value: Any = None
    source: str


class ConstitutionRef(Model):
    version: int
    sha256: str
    created_at: datetime


class Project(Model):
    """A project: its own settings (None: unset), those in effect, the current constitution's
    version and the status summary (schema ``ProjectView``)."""

    project_id: str
    name: str | None
    description: str | None
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None
    settings: dict[str, int | str | None]
    effective_settings: dict[str, EffectiveSetting]
    constitution: ConstitutionRef | None
    status: ProjectSummary

    @property
    def archived(self) -> bool:
        return self.archived_at is not None


class Constitution(Model):
    """One version of a project's constitution (schema ``ConstitutionView``)."""

    project_id: str
    version: int
    sha256: str
    text: str
    created_at: datetime
    created_by: str | None


class OldestWaiting(Model):
    task_id: str
    created_at: datetime
    priority: str


class ProjectStatus(ProjectSummary):
    oldest_waiting_task: OldestWaiting | None
    median_execution_time_ms: int | None


class Consistency(Model):
    """A project's provenance health; ``recommended_action``: continue, pause or rollback."""

    project_id: str
    total_records: int
    tainted_count: int
    suspect_count: int
    pending_revalidation: int
    orphaned_artifacts: int
    affected_ratio: float
    recommended_action: str


class Checkpoint(Model):
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
    invalidated_by: str | None


class CheckpointPage(Model):
    """Checkpoints, newest first (offset paging only: no cursor, hence not a ``Page``)."""

    items: list[Checkpoint]
    total: int
    limit: int
    offset: int
