"""The Agent Service: analysis, tier estimate, decomposition.

Answers are validated here: unknown enum values, missing or mistyped fields and non-JSON
bodies are failures (``CallFailed``, reason recorded), never half-read decisions. Unknown
extra fields are ignored (tolerant reader).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

from orchestration_service.domain.decomposition import Plan, PlannedSubtask
from orchestration_service.domain.vocabulary import Domain, Mode, QAProfile, Tier
from orchestration_service.services.remote import ServiceClient


class _Answer(BaseModel):
    # The domain's enums validate the vocabulary; the fields keep the plain text value.
    model_config = ConfigDict(extra="ignore", frozen=True, use_enum_values=True)


class Analysis(_Answer):
    mode: Mode
    domain: Domain
    needs_decomposition: StrictBool
    qa_profile: QAProfile
    # Documented but its type is not ("low"/"high", a number …): kept as given, not used.
    estimated_complexity: Any = None


class Estimate(_Answer):
    recommended_tier: Tier
    estimated_tokens: Annotated[StrictInt, Field(ge=0)] | None = None
    confidence: Annotated[float, Field(ge=0, le=1, strict=True)] | None = None
    qa_profile: QAProfile | None = None


def _id(value: Any) -> Any:
    # Plan ids may come as numbers (1, 2, 3); they are names, compared as text.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


class Subtask(_Answer):
    id: StrictStr
    description: StrictStr
    is_atomic: StrictBool = True
    dependencies: list[StrictStr] = Field(default_factory=list)

    @field_validator("id", mode="before")
    @classmethod
    def _text_id(cls, value: Any) -> Any:
        return _id(value)

    @field_validator("dependencies", mode="before")
    @classmethod
    def _text_ids(cls, value: Any) -> Any:
        return [_id(v) for v in value] if isinstance(value, list) else value


class Decomposition(_Answer):
    subtasks: list[Subtask]
    decomposition_depth: Annotated[StrictInt, Field(ge=0)] | None = None

    def plan(self) -> Plan:
        return Plan(
            subtasks=tuple(
                PlannedSubtask(
                    id=s.id,
                    description=s.description,
                    dependencies=tuple(dict.fromkeys(s.dependencies)),
                    is_atomic=s.is_atomic,
                )
                for s in self.subtasks
            ),
            decomposition_depth=self.decomposition_depth,
        )


class AgentClient:
    def __init__(self, service: ServiceClient) -> None:
        self.service = service

    async def analyze(self, request: str, project_id: str) -> Analysis:
        return await self.service.post("/analyze", {"request": request, "project_id": project_id}, Analysis)

    async def estimate(self, task_id: str, description: str, domain: str) -> Estimate:
        body = {"task_id": task_id, "description": description, "domain": domain}
        return await self.service.post("/estimate", body, Estimate)

    async def decompose(self, task_id: str, description: str, max_depth: int) -> Decomposition:
        body = {"task_id": task_id, "description": description, "max_depth": max_depth}
        return await self.service.post("/decompose", body, Decomposition)
