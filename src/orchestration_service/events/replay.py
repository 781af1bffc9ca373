"""Replaying a stored dead letter: the event goes through the same handlers once more.

Applied (or a duplicate, or ignored because its task is final): the letter is removed.
Refused again: the letter stays, with the new reason. A transient database error changes
nothing (the caller answers 503 and may try again).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from orchestration_service.domain.errors import Conflict, EventRejected
from orchestration_service.events.handlers import EventProcessor, parse_envelope
from orchestration_service.services.dead_letters import DeadLetterService


class DeadLetterReplay:
    def __init__(self, letters: DeadLetterService, processor: EventProcessor) -> None:
        self.letters = letters
        self.processor = processor

    async def replay(self, letter_id: uuid.UUID, *, projects: Sequence[str] | None) -> dict[str, Any]:
        """``projects``: the caller's (a project-scoped key replays only its projects' letters,
        and the event may touch only those, as through the ingress)."""
        letter = await self.letters.get(letter_id, projects)
        if letter.payload_truncated:
            raise Conflict(f"dead letter {letter_id} was stored cut short; it cannot be replayed")
        try:
            ce = parse_envelope(letter.payload.encode())
            result = await self.processor.process(ce, projects=projects)
        except EventRejected as exc:
            await self.letters.still_dead(letter_id, kind=exc.kind, reason=exc.reason)
            return {
                "id": letter_id,
                "outcome": "dead_lettered",
                "detail": f"still refused: {exc.kind}: {exc.reason}",
                "kind": exc.kind,
                "reason": exc.reason,
            }
        await self.letters.remove(letter_id)
        return {
            "id": letter_id,
            "outcome": result.outcome,
            "detail": result.detail,
            "kind": None,
            "reason": None,
        }
