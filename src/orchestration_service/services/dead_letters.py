"""Dead letters: events this service refused (from the broker or the HTTP ingress), stored
to be looked at, replayed once their cause is fixed (``events/replay.py``), or discarded.

Storing one never fails the caller: the broker still dead-letters the delivery and the
ingress still answers its problem; a letter that could not be stored is logged.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from orchestration_service.config import Settings
from orchestration_service.domain.errors import NotFound
from orchestration_service.domain.ids import parse_uuid, uuid7
from orchestration_service.domain.paging import LIST_TOTAL_CAP
from orchestration_service.repositories.dead_letters import DeadLetter, DeadLetterFilter, DeadLetterPage
from orchestration_service.repositories.ports import Storage

__all__ = ["DeadLetter", "DeadLetterFilter", "DeadLetterPage", "DeadLetterService"]

log = logging.getLogger(__name__)

TRIM_EVERY = 100  # letters stored by this process between two trims to ``fleet.dead_letters_kept``


def _text(raw: bytes | dict[str, Any]) -> str:
    body = raw if isinstance(raw, bytes | bytearray) else orjson.dumps(raw, default=str)
    # PostgreSQL text cannot hold NUL; such a letter is shown, never replayed as it was.
    return bytes(body).decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def _cut(text: str, max_bytes: int) -> tuple[str, bool]:
    encoded = text.encode()
    if len(encoded) <= max_bytes:
        return text, False
    return encoded[:max_bytes].decode("utf-8", errors="ignore"), True


def _envelope_fields(raw: bytes | dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """The event's id, type and data.task_id, where the payload tells them."""
    try:
        env = raw if isinstance(raw, dict) else orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, None, None
    if not isinstance(env, dict):
        return None, None, None
    data = env.get("data")
    task_id = data.get("task_id") if isinstance(data, dict) else None

    def short(v: Any) -> str | None:
        return v[:255] if isinstance(v, str) else None

    return short(env.get("id")), short(env.get("type")), short(task_id)


class DeadLetterService:
    def __init__(self, storage: Storage, settings: Settings) -> None:
        self.storage = storage
        self.settings = settings.fleet
        self._stored = 0

    async def record(
        self,
        source: str,
        raw: bytes | dict[str, Any],
        kind: str,
        reason: str,
        projects: Collection[str] | None = None,
    ) -> uuid.UUID | None:
        """Store a dead letter; None (logged) if the database refused. ``projects``: the
        sender's (an ingress key's), None for a trusted sender. The letter is attributed to
        its task's project only when that project is the sender's."""
        try:
            return await self._record(source, raw, kind, reason, projects)
        except Exception as exc:
            log.error("could not store a dead letter (%s: %s)", type(exc).__name__, exc)
            return None

    async def _record(
        self,
        source: str,
        raw: bytes | dict[str, Any],
        kind: str,
        reason: str,
        projects: Collection[str] | None,
    ) -> uuid.UUID:
        event_id, event_type, task_ref = _envelope_fields(raw)
        payload, truncated = _cut(_text(raw), self.settings.dead_letter_max_payload_bytes)
        letter_id = uuid7()
        async with self.storage.transaction() as uow:
            project = None
            task_id = None if task_ref is None else parse_uuid(task_ref)
            if task_id is not None:
                task = await uow.tasks.get(task_id)
                if task is not None and (projects is None or task["project_id"] in projects):
                    project = task["project_id"]
            await uow.dead_letters.add(
                DeadLetter(
                    id=letter_id,
                    event_id=event_id,
                    event_type=event_type,
                    source=source,
                    kind=kind[:32],
                    reason=_text(reason.encode())[:2000],
                    project_id=project,
                    payload=payload,
                    payload_truncated=truncated,
                    created_at=datetime.now(UTC),
                )
            )
            self._stored += 1
            if self._stored % TRIM_EVERY == 0:
                await uow.dead_letters.trim(self.settings.dead_letters_kept)
        return letter_id

    async def list(
        self,
        f: DeadLetterFilter,
        *,
        limit: int,
        offset: int,
        after: tuple[datetime, uuid.UUID] | None,
    ) -> DeadLetterPage:
        async with self.storage.read() as uow:
            return await uow.dead_letters.page(f, limit=limit, offset=offset, after=after, cap=LIST_TOTAL_CAP)

    async def get(self, letter_id: uuid.UUID, projects: Sequence[str] | None) -> DeadLetter:
        async with self.storage.read() as uow:
            letter = await uow.dead_letters.get(letter_id)
        if letter is None or (projects is not None and letter.project_id not in projects):
            raise NotFound(f"dead letter {letter_id} does not exist")
        return letter

    async def still_dead(self, letter_id: uuid.UUID, *, kind: str, reason: str) -> None:
        async with self.storage.transaction() as uow:
            await uow.dead_letters.replayed(
                letter_id, kind=kind[:32], reason=reason[:2000], at=datetime.now(UTC)
            )

    async def remove(self, letter_id: uuid.UUID) -> bool:
        """The letter's event went through: drop it (False: another replay already did)."""
        async with self.storage.transaction() as uow:
            return await uow.dead_letters.delete(letter_id)

    async def discard(self, letter_id: uuid.UUID, projects: Sequence[str] | None) -> None:
        await self.get(letter_id, projects)  # 404 for one the caller may not see
        async with self.storage.transaction() as uow:
            if not await uow.dead_letters.delete(letter_id):
                raise NotFound(f"dead letter {letter_id} does not exist")
