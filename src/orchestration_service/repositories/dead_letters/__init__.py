"""Stored dead letters: the port, one implementation per backend."""

from orchestration_service.repositories.dead_letters.port import (
    DeadLetter,
    DeadLetterFilter,
    DeadLetterPage,
    DeadLetterRepository,
)

__all__ = ["DeadLetter", "DeadLetterFilter", "DeadLetterPage", "DeadLetterRepository"]
