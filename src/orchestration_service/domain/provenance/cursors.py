"""The keyset cursor of listings: (created_at, id) of the last row of the previous page."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson


class BadCursor(ValueError):
    pass


def encode_cursor(created_at: datetime, row_id: Any) -> str:
    raw = orjson.dumps([created_at.astimezone(UTC).isoformat(), str(row_id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str, *, uuid_ids: bool = True) -> tuple[datetime, Any]:
    """(created_at, id) of the last row of the previous page."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created, row_id = orjson.loads(raw)
        when = datetime.fromisoformat(created)
    except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError):
        raise BadCursor("not a cursor this service issued") from None
    if when.tzinfo is None or not isinstance(row_id, str):
        raise BadCursor("not a cursor this service issued")
    if not uuid_ids:
        return when, row_id
    try:
        return when, uuid.UUID(row_id)
    except ValueError:
        raise BadCursor("not a cursor this service issued") from None
