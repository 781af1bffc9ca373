"""Group commit of submissions and grouped status reads on PostgreSQL (``db.batching``):
calls that arrive together share statements, yet each gets its own outcome and rows."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from orchestration_service.domain.errors import IdempotencyConflict, NotFound
from orchestration_service.repositories.tasks.postgres import PostgresHotPaths
from orchestration_service.schemas.tasks import SubmitTask
from tests.conftest import Service


@pytest.fixture
def database_url(pg_url: str) -> str:
    """PostgreSQL only (the batching is its hot path); ``service`` and ``clean_db`` follow."""
    return pg_url


async def _rows_of(svc: Service, project: str) -> tuple[int, int, int]:
    """(tasks, their 'submitted' history rows, their task.created events) in a project."""
    assert svc.container.db.pg is not None
    row = await svc.container.db.pg.fetchrow(
        """
        SELECT (SELECT count(*) FROM tasks WHERE project_id = $1),
               (SELECT count(*) FROM task_history h JOIN tasks t ON t.id = h.task_id
                 WHERE t.project_id = $1 AND h.reason = 'submitted'),
               (SELECT count(*) FROM outbox WHERE project_id = $1 AND event_type = 'task.created')
        """,
        project,
    )
    assert row is not None
    return row[0], row[1], row[2]


async def test_concurrent_submissions_share_statements(service: Service) -> None:
    tasks = service.container.tasks
    cmds = [SubmitTask(description=f"batch {n}", project_id="p-batch") for n in range(40)]
    results = await asyncio.gather(*(tasks.submit(c) for c in cmds))
    assert len({r.task["id"] for r in results}) == 40
    assert await _rows_of(service, "p-batch") == (40, 40, 40)
    fast = service.container.storage.task_hot_paths
    assert isinstance(fast, PostgresHotPaths)
    # The first goes at once, alone; the other 39 wait for it and go together.
    assert fast.submit_batches.statements <= 3


async def test_a_row_the_database_refuses_fails_only_its_own_submission(service: Service) -> None:
    tasks = service.container.tasks
    good = [SubmitTask(description=f"good {n}", project_id="p-bad-row") for n in range(10)]
    # NUL cannot be stored in PostgreSQL text; the schema refuses it, so it is built unchecked.
    bad = SubmitTask.model_construct(description="bad \x00 row", project_id="p-bad-row", priority=None)
    results = await asyncio.gather(
        *(tasks.submit(c) for c in [*good[:5], bad, *good[5:]]), return_exceptions=True
    )
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 1 and results[5] is failures[0]
    assert await _rows_of(service, "p-bad-row") == (10, 10, 10)


async def test_one_idempotency_key_twice_in_a_burst_makes_one_task(service: Service) -> None:
    tasks = service.container.tasks
    same = SubmitTask(description="once", project_id="p-key")
    other = SubmitTask(description="not the same body", project_id="p-key")
    fillers = [SubmitTask(description=f"filler {n}", project_id="p-key") for n in range(6)]
    results = await asyncio.gather(
        *(tasks.submit(c) for c in fillers),
        tasks.submit(same, idempotency_key="k1"),
        tasks.submit(same, idempotency_key="k1"),
    )
    first, again = results[6:]
    assert first.task["id"] == again.task["id"]
    assert [first.replayed, again.replayed].count(True) == 1
    with pytest.raises(IdempotencyConflict):
        await tasks.submit(other, idempotency_key="k1")
    assert await _rows_of(service, "p-key") == (7, 7, 7)


async def test_concurrent_status_reads_share_statements(service: Service) -> None:
    tasks = service.container.tasks
    made = [await tasks.submit(SubmitTask(description=f"read {n}", project_id="p-read")) for n in range(20)]
    ids = [m.task["id"] for m in made]
    unknown = uuid.uuid4()
    fast = service.container.storage.task_hot_paths
    assert isinstance(fast, PostgresHotPaths)
    before = fast.status_batches.statements
    asked = [*ids, ids[0], unknown]  # a repeated id and one that does not exist
    views = await asyncio.gather(*(tasks.get(i) for i in asked[:-1]), return_exceptions=True)
    missing = await asyncio.gather(tasks.get(unknown), return_exceptions=True)
    assert [v.task["id"] for v in views if not isinstance(v, BaseException)] == asked[:-1]
    assert all(v.task["description"] == f"read {n}" for n, v in enumerate(views[:20]))  # type: ignore[union-attr]
    assert isinstance(missing[0], NotFound)
    assert fast.status_batches.statements - before <= 4
