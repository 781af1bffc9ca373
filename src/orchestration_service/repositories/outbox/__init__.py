"""The outbox and the event log: the port the use cases see, and its implementations."""

from orchestration_service.repositories.outbox.port import OutboxRepository

__all__ = ["OutboxRepository"]
