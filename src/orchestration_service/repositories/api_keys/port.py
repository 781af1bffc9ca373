"""What the use cases may ask of the API key store."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """One stored key: its hash, never the key."""

    id: uuid.UUID
    name: str
    key_hash: str
    key_hint: str
    scope: str
    all_projects: bool
    projects: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyRepository(Protocol):
    async def insert(self, key: ApiKeyRecord) -> None: ...

    async def insert_if_absent(self, key: ApiKeyRecord) -> bool:
        """Insert unless a key with the same hash exists (revoked or not); True if inserted.
        Replicas starting together may all try: one row results."""
        ...

    async def by_hash(self, key_hash: str) -> ApiKeyRecord | None: ...

    async def all(self) -> Sequence[ApiKeyRecord]:
        """Every key, oldest first."""
        ...

    async def revoke(self, key_id: uuid.UUID) -> bool:
        """Revoke an active key; False if there is none by that id."""
        ...
