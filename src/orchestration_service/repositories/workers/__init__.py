"""Workers seen on consumed events and the fleet's reads: the port, one implementation per backend."""

from orchestration_service.repositories.workers.port import (
    AttemptSeen,
    FailureFilter,
    FailurePage,
    TierCount,
    WorkerPage,
    WorkerRepository,
    WorkerSummary,
)

__all__ = [
    "AttemptSeen",
    "FailureFilter",
    "FailurePage",
    "TierCount",
    "WorkerPage",
    "WorkerRepository",
    "WorkerSummary",
]
