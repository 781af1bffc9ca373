"""Time-ordered UUIDs (RFC 9562 version 7).

Ids that grow with time keep B-tree inserts at the right edge of the index and make
"newest first" a cheap order. Python 3.11 has no uuid7, hence this small function.
"""

from __future__ import annotations

import os
import time
import uuid


def uuid7() -> uuid.UUID:
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # 12 random bits
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)


def parse_uuid(text: str) -> uuid.UUID | None:
    """A UUID, or None for anything else (unknown ids are a 404, not a 422)."""
    try:
        return uuid.UUID(text)
    except (ValueError, AttributeError, TypeError):
        return None
