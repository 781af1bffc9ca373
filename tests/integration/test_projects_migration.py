"""Migration 0014, on both databases: every project that has tasks gets its
row, with the time of its first task; a downgrade keeps the tasks."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from tests.integration.test_migrations import TASK_ROW, downgrade, execute, fresh_url, migrate  # noqa: F401

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


async def test_projects_with_tasks_get_their_rows(fresh_url: str) -> None:  # noqa: F811
    await migrate(fresh_url, "0013")
    rows = [("a", T0), ("a", T0 + timedelta(minutes=5)), ("b", T0 + timedelta(hours=1))]
    await execute(fresh_url, TASK_ROW, [{"id": uuid.uuid4().hex, "p": p, "t": t} for p, t in rows])
    await migrate(fresh_url, "0014")
    got = await execute(
        fresh_url, "SELECT project_id, created_at, max_concurrent, archived_at FROM projects ORDER BY 1"
    )
    assert [(r[0], r[2], r[3]) for r in got] == [("a", None, None), ("b", None, None)]
    first = got[0][1] if isinstance(got[0][1], datetime) else datetime.fromisoformat(str(got[0][1]))
    assert first.replace(tzinfo=UTC) == T0
    await downgrade(fresh_url, "0013")
    engine_tables = await execute(fresh_url, "SELECT count(*) FROM tasks")
    assert engine_tables[0][0] == 3
