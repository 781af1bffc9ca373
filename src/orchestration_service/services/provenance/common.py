"""What the provenance use cases share: ids from the path, the project scope, pages."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson

from orchestration_service.domain.errors import NotFound
from orchestration_service.domain.lifecycle import ACTIVE_STATES
from orchestration_service.domain.provenance import output_artifact_ids

# "In flight" for the impact report: every unfinished status.
IN_FLIGHT = sorted(s.value for s in ACTIVE_STATES)
DEFAULT_MAX_DEPTH = 50
MAX_DEPTH_LIMIT = 1000
# At most this many records (and artifact ids, tasks) in each list of a graph answer; beyond,
# the answer says ``truncated``. The walk itself is bounded by ``max_depth``.
DEFAULT_GRAPH_LIMIT = 1000
MAX_GRAPH_LIMIT = 10_000

T = TypeVar("T")


def parse_record_id(raw: str | uuid.UUID) -> uuid.UUID:
    if isinstance(raw, uuid.UUID):
        return raw
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"provenance record {raw} does not exist") from None


def visible(project_id: str | None, project_ids: Sequence[str] | None) -> bool:
    return project_ids is None or project_id in project_ids


def artifact_ids(outputs: str | None) -> list[str]:
    """A record's artifact ids from its ``outputs`` JSON text: ``output_artifact_ids`` for the
    graph answers' hot loop (a thousand records each), on what orjson builds (exact types)."""
    if outputs is None:
        return []
    found = orjson.loads(outputs)
    if type(found) is not list:
        return output_artifact_ids(found)
    ids: list[str] = []
    for o in found:
        if type(o) is dict:
            a = o.get("artifact_id")
            if type(a) is str and a and len(a) <= 255 and a not in ids:
                ids.append(a)
    return ids


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    rows: Sequence[T]
    total: int  # at most LIST_TOTAL_CAP
    has_more: bool
    total_capped: bool = False  # more match than ``total``

    def with_rows(self, rows: Sequence[Any]) -> Page[Any]:
        """The same page with other rows (its answer documents, say)."""
        return Page(rows, self.total, self.has_more, self.total_capped)
