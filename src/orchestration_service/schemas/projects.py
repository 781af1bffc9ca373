"""Project API shapes: creation and change (input), the project and its constitution
(output)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from orchestration_service.domain.lifecycle import Priority
from orchestration_service.domain.vocabulary import QAProfile
from orchestration_service.schemas.common import NO_NUL, ProjectSummary
from orchestration_service.schemas.tasks import ProjectId

CONSTITUTION_MAX_BYTES = 65_536

Constitution = Annotated[
    str,
    StringConstraints(max_length=CONSTITUTION_MAX_BYTES, pattern=NO_NUL),
    Field(description="Markdown, up to 64 KiB (UTF-8): the project's coding standards, sent to workers."),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectSettingsIn(_Strict):
    """A project's own settings; null (or absent) falls back to the configuration."""

    max_concurrent: int | None = Field(None, strict=True, ge=1, le=10_000)
    default_priority: Priority | None = None
    default_qa_profile: QAProfile | None = None
    timeout_default_seconds: int | None = Field(None, strict=True, ge=1, le=7 * 24 * 3600)
    max_attempts_default: int | None = Field(None, strict=True, ge=1, le=100)


class CreateProject(_Strict):
    project_id: ProjectId
    name: Annotated[str, StringConstraints(max_length=255, pattern=NO_NUL)] | None = None
    description: Annotated[str, StringConstraints(max_length=10_000, pattern=NO_NUL)] | None = None
    constitution: Constitution | None = None
    settings: ProjectSettingsIn = Field(default_factory=ProjectSettingsIn)


class UpdateProject(_Strict):
    """Only the fields given change; in ``settings``, a null falls back to the configuration."""

    name: Annotated[str, StringConstraints(max_length=255, pattern=NO_NUL)] | None = None
    description: Annotated[str, StringConstraints(max_length=10_000, pattern=NO_NUL)] | None = None
    constitution: Constitution | None = None
    settings: ProjectSettingsIn | None = None


class EffectiveSetting(BaseModel):
    value: Any = Field(description="The value in effect.")
    source: str = Field(description="project (its own), configuration, or routing (chosen per task).")


class ConstitutionRef(BaseModel):
    version: int
    sha256: str
    created_at: datetime


class ProjectView(BaseModel):
    project_id: str
    name: str | None
    description: str | None
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None
    settings: dict[str, int | str | None] = Field(description="The project's own settings (null: unset).")
    effective_settings: dict[str, EffectiveSetting]
    constitution: ConstitutionRef | None
    status: ProjectSummary


class ConstitutionView(BaseModel):
    project_id: str
    version: int
    sha256: str
    text: str
    created_at: datetime
    created_by: str | None
