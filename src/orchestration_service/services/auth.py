"""API keys: creation (shown once), listing, revocation, and the per-request check.

A key is ``orch_<24 url-safe random bytes>``; only its SHA-256 is stored (the key has 192
random bits, so a slow password hash would add cost and no safety). The check caches the
lookup by that hash for a few seconds, never the key itself: a check costs a dict lookup on
a hit and one indexed query on a miss. A revocation is seen by every replica within the
cache TTL (immediately on the replica that revoked it).
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from orchestration_service.domain.access import Scope
from orchestration_service.domain.errors import NotFound, ValidationFailed
from orchestration_service.domain.ids import uuid7
from orchestration_service.repositories.api_keys import ApiKeyRecord
from orchestration_service.repositories.ports import Storage

KEY_PREFIX = "orch_"
BOOTSTRAP_KEY_NAME = "bootstrap-admin"
BOOTSTRAP_MIN_LENGTH = 32


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: uuid.UUID
    name: str
    scope: Scope
    projects: tuple[str, ...] | None  # None = every project

    def allows(self, needed: Scope) -> bool:
        return self.scope.level >= needed.level


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeyService:
    def __init__(self, storage: Storage, *, cache_ttl: float = 5.0) -> None:
        self.storage = storage
        self.cache_ttl = cache_ttl
        self._cache: dict[str, tuple[Principal | None, float]] = {}

    async def create(
        self, *, name: str, scope: Scope, projects: Sequence[str] | None
    ) -> tuple[str, ApiKeyRecord]:
        if not name.strip():
            raise ValidationFailed("a key needs a name")
        if projects is not None and not projects:
            raise ValidationFailed("give at least one project, or all projects")
        key = KEY_PREFIX + secrets.token_urlsafe(24)
        record = ApiKeyRecord(
            id=uuid7(),
            name=name.strip(),
            key_hash=hash_key(key),
            key_hint=key[: len(KEY_PREFIX) + 4],
            scope=scope.value,
            all_projects=projects is None,
            projects=tuple(sorted(set(projects))) if projects is not None else (),
            created_at=datetime.now(UTC),
            revoked_at=None,
        )
        async with self.storage.transaction() as uow:
            await uow.api_keys.insert(record)
        return key, record

    async def ensure_bootstrap(self, key: str) -> bool:
        """Store the configured bootstrap admin key (all projects) unless its hash is there
        already, revoked or not; True when stored now. Idempotent across replicas."""
        if len(key) < BOOTSTRAP_MIN_LENGTH:
            # Never echo the value: it is a credential.
            raise ValueError(
                f"auth.bootstrap_admin_key (ORCH_AUTH__BOOTSTRAP_ADMIN_KEY) must be at least "
                f"{BOOTSTRAP_MIN_LENGTH} characters, e.g. the output of `openssl rand -hex 32`"
            )
        if key.lower().startswith("change-me"):
            # .env.example's placeholder is public: a deployment that kept it has a known key.
            raise ValueError(
                "auth.bootstrap_admin_key (ORCH_AUTH__BOOTSTRAP_ADMIN_KEY) is still the placeholder "
                "of .env.example; set your own, e.g. the output of `openssl rand -hex 32`"
            )
        record = ApiKeyRecord(
            id=uuid7(),
            name=BOOTSTRAP_KEY_NAME,
            key_hash=hash_key(key),
            key_hint=key[:4],
            scope=Scope.ADMIN.value,
            all_projects=True,
            projects=(),
            created_at=datetime.now(UTC),
            revoked_at=None,
        )
        async with self.storage.transaction() as uow:
            return await uow.api_keys.insert_if_absent(record)

    async def list(self) -> Sequence[ApiKeyRecord]:
        async with self.storage.read() as uow:
            return await uow.api_keys.all()

    async def revoke(self, key_id: uuid.UUID) -> None:
        async with self.storage.transaction() as uow:
            if not await uow.api_keys.revoke(key_id):
                raise NotFound(f"no active key {key_id}")
        self._cache.clear()

    async def authenticate(self, key: str) -> Principal | None:
        digest = hash_key(key)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and now - hit[1] < self.cache_ttl:
            return hit[0]
        async with self.storage.read() as uow:
            record = await uow.api_keys.by_hash(digest)
        principal = None
        if record is not None and record.revoked_at is None:
            principal = Principal(
                key_id=record.id,
                name=record.name,
                scope=Scope(record.scope),
                projects=None if record.all_projects else record.projects,
            )
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (principal, now)
        return principal
