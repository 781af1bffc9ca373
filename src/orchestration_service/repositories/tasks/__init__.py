"""Tasks, their history and dependencies: the port the use cases see, and one
implementation per backend."""

from orchestration_service.repositories.tasks.port import (
    EventClaim,
    HistoryRecord,
    StatusRead,
    Submission,
    TaskFilter,
    TaskHotPaths,
    TaskRecord,
    TaskRepository,
)

__all__ = [
    "EventClaim",
    "HistoryRecord",
    "StatusRead",
    "Submission",
    "TaskFilter",
    "TaskHotPaths",
    "TaskRecord",
    "TaskRepository",
]
