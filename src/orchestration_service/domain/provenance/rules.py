"""Rules about a record's artifacts and a project's consistency."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from orchestration_service.domain.provenance.legacy import output_artifact_ids

# -- consistency -------------------------------------------------------------------------------
ROLLBACK_IMPACT_RATIO = 0.3
"""The Cascade Service's project impact ratio: at or above it, a project is rolled back."""


def recommended_action(total: int, affected: int, pending_revalidation: int) -> str:
    """``rollback`` when tainted or suspect records are at least 30 % of the project's
    records; ``pause`` when there is any (or any awaiting revalidation); else ``continue``."""
    if total > 0 and affected / total >= ROLLBACK_IMPACT_RATIO:
        return "rollback"
    if affected > 0 or pending_revalidation > 0:
        return "pause"
    return "continue"


def primary_artifact(outputs: Any, record_id: Any) -> str:
    """The artifact that names a record in events: its first output's id, else the record id."""
    ids = output_artifact_ids(outputs)
    return ids[0] if ids else str(record_id)


def artifacts_or_record(outputs: Any, record_id: Any) -> list[str]:
    """Every artifact a record produced; a record without artifact ids is named by its id."""
    return output_artifact_ids(outputs) or [str(record_id)]


def chunks(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
