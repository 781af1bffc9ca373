"""Deadlocks on PostgreSQL (``db.errors.retry_conflicts``): a transaction PostgreSQL aborts
to break a lock cycle runs again; the event is applied once and never dead-lettered."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

import asyncpg
import pytest

from orchestration_service.db.tables import tasks
from orchestration_service.services.lifecycle import utcnow
from tests.conftest import Service
from tests.integration.test_event_lifecycle import Harness, cloud_event
from tests.integration.test_provenance import Graph, Rec
from tests.integration.test_tasks_api import wait_for_status

T = TypeVar("T")


@pytest.fixture
def database_url(pg_url: str) -> str:
    """PostgreSQL only: SQLite takes one writer at a time and cannot deadlock."""
    return pg_url


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def _wait_for_lock_wait(other: asyncpg.Connection, not_pid: int, text: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        waiting = await other.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND pid <> $1 AND query LIKE '%' || $2 || '%'",
            not_pid,
            text,
        )
        if waiting:
            return
        await asyncio.sleep(0.02)
    rows = await other.fetch(
        "SELECT pid, wait_event_type, state, left(query, 200) AS q"
        " FROM pg_stat_activity WHERE datname = current_database()"
    )
    raise AssertionError(f"no backend waited on a lock in {text!r}: {rows}")


async def _parent_with_a_subtask_in_qa(service: Service) -> tuple[uuid.UUID, uuid.UUID]:
    now = utcnow()
    base = {
        "project_id": "p-deadlock",
        "description": "x",
        "priority": "normal",
        "priority_rank": 1,
        "options": {},
        "attempt": 1,
        "max_attempts": 1,
        "timeout_seconds": 600,
        "created_at": now,
        "updated_at": now,
        "routed_at": now,
        "started_at": now,
        "parent_id": None,  # every row names every column: one executemany takes the first's keys
        "depth": 0,
    }
    parent, child = uuid.uuid4(), uuid.uuid4()
    async with service.container.db.transaction() as tx:
        await tx.conn.execute(
            tasks.insert(),
            [
                {**base, "id": parent, "status": "decomposing"},
                {**base, "id": child, "status": "validating", "parent_id": parent, "depth": 1},
            ],
        )
    return parent, child


async def deadlock(
    url: str, table: str, held: uuid.UUID, wanted: uuid.UUID, work: Coroutine[Any, Any, T], waits_in: str
) -> T:
    """Run ``work`` (the service's) into a real deadlock with another session, and return its
    result.

    The other session locks ``held`` in ``table``; ``work`` starts, takes its own locks and
    waits for ``held`` (seen as a lock wait in a statement containing ``waits_in``); the
    other session then asks for ``wanted``, which ``work`` holds: a cycle. ``work``'s backend
    has waited longer, so its deadlock check fires first and PostgreSQL aborts it; the other
    session's lock is then granted (this raises DeadlockDetectedError if it was the one
    aborted) and it lets go, so that ``work`` can only succeed by running again."""
    other = await asyncpg.connect(_dsn(url))
    watcher = await asyncpg.connect(_dsn(url))
    try:
        tx = other.transaction()
        await tx.start()
        await other.execute(f"SELECT 1 FROM {table} WHERE id = $1 FOR UPDATE", held)
        running = asyncio.ensure_future(work)
        await _wait_for_lock_wait(watcher, other.get_server_pid(), waits_in)
        await other.execute(f"SELECT 1 FROM {table} WHERE id = $1 FOR UPDATE", wanted)
        await tx.rollback()
        return await asyncio.wait_for(running, 15)
    finally:
        await other.close()
        await watcher.close()


async def test_a_subtask_event_aborted_by_a_deadlock_runs_again(service: Service, database_url: str) -> None:
    """The lock cycle of a subtask's event (the subtask, then its parent) against a cancel
    of the parent (the parent, then its subtasks)."""
    h = Harness(service)
    parent, child = await _parent_with_a_subtask_in_qa(service)
    event = cloud_event("task.validated", {"task_id": str(child), "confidence": 0.9}, source="/qa-service")
    # The event locks the subtask, completes it, then waits for the parent's row, which a
    # cancel of the parent holds; that cancel then wants the subtask.
    await deadlock(
        database_url, "tasks", parent, child, h.send(event, "task.validated", "qa.events"), "FOR UPDATE"
    )
    assert list(h.bus.dead_letters) == []
    assert (await wait_for_status(service, str(child), "completed"))["provenance_id"]
    await wait_for_status(service, str(parent), "completed")  # its only subtask completed
    applied = [e for e in await h.history(str(child)) if str(e.get("cause", "")).endswith(event["id"])]
    assert [e["to"] for e in applied] == ["completed"]


async def test_a_cancel_aborted_by_a_deadlock_runs_again(service: Service, database_url: str) -> None:
    """The same cycle from the other side: the cancel of the parent is the one aborted."""
    parent, child = await _parent_with_a_subtask_in_qa(service)
    # The cancel locks the parent, then waits for its subtask's row, which a subtask's event
    # holds; that event then wants the parent.
    cancel = service.client.post(f"/api/v1/tasks/{parent}/cancel", json={"reason": "changed my mind"})
    answer = await deadlock(database_url, "tasks", child, parent, cancel, "FOR UPDATE")
    assert answer.status_code == 200, answer.text
    assert (await wait_for_status(service, str(parent), "cancelled"))["status"] == "cancelled"
    await wait_for_status(service, str(child), "cancelled")


async def test_a_taint_aborted_by_a_deadlock_runs_again(service: Service, database_url: str) -> None:
    """Two cascades over common records: one holds a downstream record and then wants the
    upstream one another cascade holds while it reaches downstream."""
    g = Graph()
    await g.add(service.container.storage, [Rec("up"), Rec("down", inputs=["up"])])
    # The taint locks "up", then waits to mark "down" suspect.
    taint = service.client.post(
        f"/api/v1/provenance/{g.id('up')}/taint", json={"reason": "bad model", "tainted_by": "ops"}
    )
    answer = await deadlock(
        database_url, "provenance_records", g.ids["down"], g.ids["up"], taint, "provenance_records"
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["tainted_count"] == 1 and answer.json()["suspect_count"] == 1
    trail = (await service.client.get("/api/v1/provenance/taint-events")).json()
    assert trail["total"] == 2  # written once: the aborted run left nothing behind
