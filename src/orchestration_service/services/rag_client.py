"""The RAG Service: context retrieved for a task, delivered in its task.ready context.

The answer is validated like the Agent Service's (see ``agent_client``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from orchestration_service.services.remote import ServiceClient


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class RagSource(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    artifact_id: StrictStr
    relevance_score: Annotated[float, Field(strict=True)] | None = None


class RagAnswer(_Answer):
    context: StrictStr
    sources: list[RagSource] = Field(default_factory=list)
    tokens_used: Annotated[StrictInt, Field(ge=0)] | None = None


class RagClient:
    def __init__(self, service: ServiceClient, max_tokens: int) -> None:
        self.service = service
        self.max_tokens = max_tokens

    async def query(self, query: str, project_id: str) -> RagAnswer:
        body = {
            "query": query,
            "project_id": project_id,
            "max_tokens": self.max_tokens,
            "search_mode": "hybrid",
        }
        return await self.service.post("/query", body, RagAnswer)
