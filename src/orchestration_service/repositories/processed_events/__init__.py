"""Idempotency of consumed events: the port the use cases see, and its implementations."""

from orchestration_service.repositories.processed_events.port import ProcessedEventRepository

__all__ = ["ProcessedEventRepository"]
