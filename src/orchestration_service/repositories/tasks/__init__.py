"""Tasks, their history and dependencies: the port the use cases see, and one
implementation per backend."""

from orchestration_service.repositories.tasks.port import (
    EventClaim,
    HistoryRow,
    StatusRead,
    Submission,
    TaskFilter,
    TaskHotPaths,
    TaskRepository,
    TaskRow,
)

__all__ = [
    "EventClaim",
    "HistoryRow",
    "StatusRead",
    "Submission",
    "TaskFilter",
    "TaskHotPaths",
    "TaskRepository",
    "TaskRow",
]
