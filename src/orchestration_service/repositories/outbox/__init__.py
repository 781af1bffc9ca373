"""The outbox and the event log: the ports the use cases see (implementations in
``sql.py``, ``postgres.py``, ``sqlite.py``, chosen by ``repositories.backends``)."""

from orchestration_service.repositories.outbox.port import (
    LogEntry,
    LogFeed,
    OutboxRepository,
    RelayCoordination,
    UnpublishedEvent,
)

__all__ = ["LogEntry", "LogFeed", "OutboxRepository", "RelayCoordination", "UnpublishedEvent"]
