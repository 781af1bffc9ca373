"""Deadlocks on PostgreSQL (``db.errors.retry_conflicts``): a transaction PostgreSQL aborts
to break a lock cycle runs again; the event is applied once and never dead-lettered."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest

from orchestration_service.db.tables import tasks
from orchestration_service.services.lifecycle import utcnow
from tests.conftest import Service
from tests.integration.test_event_lifecycle import Harness, cloud_event
from tests.integration.test_provenance import Graph, Rec
from tests.integration.test_tasks_api import wait_for_status


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


async def test_a_subtask_event_aborted_by_a_deadlock_runs_again(service: Service, database_url: str) -> None:
    """The lock cycle of a subtask's event (the subtask, then its parent) against a cancel
    of the parent (the parent, then its subtasks)."""
    h = Harness(service)
    parent, child = await _parent_with_a_subtask_in_qa(service)
    event = cloud_event("task.validated", {"task_id": str(child), "confidence": 0.9}, source="/qa-service")
    canceller = await asyncpg.connect(_dsn(database_url))
    watcher = await asyncpg.connect(_dsn(database_url))
    try:
        tx = canceller.transaction()
        await tx.start()
        await canceller.execute("SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE", parent)
        # The event locks the subtask, completes it, then waits for the parent's row.
        delivery = asyncio.create_task(h.send(event, "task.validated", "qa.events"))
        await _wait_for_lock_wait(watcher, canceller.get_server_pid(), "FOR UPDATE")
        # The canceller now wants the subtask: a cycle. The event's backend has waited
        # longer, so its deadlock check fires first and aborts it; the canceller's lock is
        # then granted (this would raise DeadlockDetectedError if it were the one aborted).
        await canceller.execute("SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE", child)
        await tx.rollback()  # and lets go: the event's second run applies it
        await asyncio.wait_for(delivery, 15)
    finally:
        await canceller.close()
        await watcher.close()
    assert list(h.bus.dead_letters) == []
    assert (await wait_for_status(service, str(child), "completed"))["provenance_id"]
    await wait_for_status(service, str(parent), "completed")  # its only subtask completed
    applied = [e for e in await h.history(str(child)) if str(e.get("cause", "")).endswith(event["id"])]
    assert [e["to"] for e in applied] == ["completed"]


async def test_a_cancel_aborted_by_a_deadlock_runs_again(service: Service, database_url: str) -> None:
    """The same cycle from the other side: the cancel of the parent is the one aborted."""
    parent, child = await _parent_with_a_subtask_in_qa(service)
    worker = await asyncpg.connect(_dsn(database_url))  # stands for a subtask's event
    watcher = await asyncpg.connect(_dsn(database_url))
    try:
        tx = worker.transaction()
        await tx.start()
        await worker.execute("SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE", child)
        cancel = asyncio.create_task(
            service.client.post(f"/api/v1/tasks/{parent}/cancel", json={"reason": "changed my mind"})
        )
        # The cancel locks the parent, then waits for its subtask's row.
        await _wait_for_lock_wait(watcher, worker.get_server_pid(), "FOR UPDATE")
        await worker.execute("SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE", parent)  # the cycle
        await tx.rollback()
        answer = await asyncio.wait_for(cancel, 15)
    finally:
        await worker.close()
        await watcher.close()
    assert answer.status_code == 200, answer.text
    assert (await wait_for_status(service, str(parent), "cancelled"))["status"] == "cancelled"
    await wait_for_status(service, str(child), "cancelled")


async def test_a_taint_aborted_by_a_deadlock_runs_again(service: Service, database_url: str) -> None:
    """Two cascades over common records: one holds a downstream record and then wants the
    upstream one another cascade holds while it reaches downstream."""
    g = Graph()
    await g.add(service.container.db, [Rec("up"), Rec("down", inputs=["up"])])
    other = await asyncpg.connect(_dsn(database_url))  # stands for a cascade that reached "down"
    watcher = await asyncpg.connect(_dsn(database_url))
    try:
        tx = other.transaction()
        await tx.start()
        await other.execute("SELECT 1 FROM provenance_records WHERE id = $1 FOR UPDATE", g.ids["down"])
        taint = asyncio.create_task(
            service.client.post(
                f"/api/v1/provenance/{g.id('up')}/taint", json={"reason": "bad model", "tainted_by": "ops"}
            )
        )
        # The taint locked "up" and now waits to mark "down" suspect.
        await _wait_for_lock_wait(watcher, other.get_server_pid(), "provenance_records")
        await other.execute("SELECT 1 FROM provenance_records WHERE id = $1 FOR UPDATE", g.ids["up"])
        await tx.rollback()
        answer = await asyncio.wait_for(taint, 15)
    finally:
        await other.close()
        await watcher.close()
    assert answer.status_code == 200, answer.text
    assert answer.json()["tainted_count"] == 1 and answer.json()["suspect_count"] == 1
    trail = (await service.client.get("/api/v1/provenance/taint-events")).json()
    assert trail["total"] == 2  # written once: the aborted run left nothing behind
