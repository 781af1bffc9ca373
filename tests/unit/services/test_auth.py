"""The API key service (creation, bootstrap, revocation, the cached check) on an in-memory
fake of the storage: the SQL is tested apart, on both backends
(tests/integration/repositories/test_api_keys.py)."""

from __future__ import annotations

import uuid

import pytest

from orchestration_service.domain.access import Scope
from orchestration_service.domain.errors import NotFound, ValidationFailed
from orchestration_service.services.auth import KEY_PREFIX, ApiKeyService, hash_key
from tests.unit.fakes_events import FakeStorage

BOOTSTRAP = "b" * 40


@pytest.fixture
def service() -> ApiKeyService:
    return ApiKeyService(FakeStorage(), cache_ttl=60)


async def test_a_created_key_is_shown_once_and_stored_as_its_hash(service: ApiKeyService) -> None:
    key, record = await service.create(name=" ci ", scope=Scope.WRITE, projects=["b", "a", "b"])
    assert key.startswith(KEY_PREFIX) and record.key_hash == hash_key(key)
    assert record.name == "ci" and record.projects == ("a", "b") and not record.all_projects
    assert record.key_hint == key[: len(KEY_PREFIX) + 4]
    assert [k.id for k in await service.list()] == [record.id]
    principal = await service.authenticate(key)
    assert principal is not None and principal.projects == ("a", "b")
    assert (
        principal.allows(Scope.READ) and principal.allows(Scope.WRITE) and not principal.allows(Scope.ADMIN)
    )
    assert await service.authenticate(key + "x") is None


async def test_invalid_keys_are_refused(service: ApiKeyService) -> None:
    with pytest.raises(ValidationFailed):
        await service.create(name=" ", scope=Scope.READ, projects=None)
    with pytest.raises(ValidationFailed):
        await service.create(name="k", scope=Scope.READ, projects=[])


async def test_the_bootstrap_key_is_stored_once_for_every_project(service: ApiKeyService) -> None:
    assert await service.ensure_bootstrap(BOOTSTRAP)
    assert not await service.ensure_bootstrap(BOOTSTRAP), "idempotent"
    principal = await service.authenticate(BOOTSTRAP)
    assert principal is not None and principal.scope is Scope.ADMIN and principal.projects is None
    for weak in ("short", "change-me" + "x" * 40):
        with pytest.raises(ValueError, match="bootstrap_admin_key") as refused:
            await service.ensure_bootstrap(weak)
        assert weak not in str(refused.value), "a credential is never echoed"


async def test_a_revoked_key_no_longer_authenticates_here_at_once(service: ApiKeyService) -> None:
    key, record = await service.create(name="k", scope=Scope.READ, projects=None)
    assert await service.authenticate(key) is not None  # cached from here on
    await service.revoke(record.id)
    assert await service.authenticate(key) is None, "the revoking replica's cache is cleared"
    with pytest.raises(NotFound):
        await service.revoke(record.id)
    with pytest.raises(NotFound):
        await service.revoke(uuid.uuid4())


async def test_lookups_are_cached_by_hash(service: ApiKeyService) -> None:
    key, _ = await service.create(name="k", scope=Scope.READ, projects=None)
    storage = service.storage
    assert isinstance(storage, FakeStorage)
    first = await service.authenticate(key)
    storage.store.api_keys.clear()  # gone from the store: the cache still answers
    assert await service.authenticate(key) == first
    service.cache_ttl = 0
    assert await service.authenticate(key) is None
