"""ApiKeyRepository on both backends."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from orchestration_service.repositories.api_keys import ApiKeyRecord
from orchestration_service.repositories.ports import Storage


def _key(name: str, key_hash: str, *, minutes: int = 0, projects: tuple[str, ...] = ()) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=uuid.uuid4(),
        name=name,
        key_hash=key_hash,
        key_hint="orch_abcd",
        scope="write",
        all_projects=not projects,
        projects=projects,
        created_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes),
        revoked_at=None,
    )


async def test_insert_then_read_back_by_hash_and_in_creation_order(storage: Storage) -> None:
    later, earlier = _key("later", "h2", minutes=5, projects=("p1", "p2")), _key("earlier", "h1")
    async with storage.transaction() as uow:
        await uow.api_keys.insert(later)
        await uow.api_keys.insert(earlier)
    async with storage.read() as uow:
        assert await uow.api_keys.by_hash("h2") == later
        assert await uow.api_keys.by_hash("nope") is None
        assert [k.name for k in await uow.api_keys.all()] == ["earlier", "later"]


async def test_insert_if_absent_keeps_the_first_key_of_a_hash(storage: Storage) -> None:
    first, second = _key("first", "same"), _key("second", "same")
    async with storage.transaction() as uow:
        assert await uow.api_keys.insert_if_absent(first)
        assert not await uow.api_keys.insert_if_absent(second)
    async with storage.read() as uow:
        assert [k.name for k in await uow.api_keys.all()] == ["first"]


async def test_revoke_once(storage: Storage) -> None:
    key = _key("k", "h")
    async with storage.transaction() as uow:
        await uow.api_keys.insert(key)
    async with storage.transaction() as uow:
        assert await uow.api_keys.revoke(key.id)
        assert not await uow.api_keys.revoke(key.id)  # already revoked
        assert not await uow.api_keys.revoke(uuid.uuid4())
    async with storage.read() as uow:
        stored = await uow.api_keys.by_hash("h")
    assert stored is not None and stored.revoked_at is not None


async def test_a_failed_unit_of_work_writes_nothing(storage: Storage) -> None:
    class Boom(Exception):
        pass

    try:
        async with storage.transaction() as uow:
            await uow.api_keys.insert(_key("k", "h"))
            raise Boom
    except Boom:
        pass
    async with storage.read() as uow:
        assert await uow.api_keys.all() == []
