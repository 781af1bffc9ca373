"""Migrations that move data, on both databases: each test migrates a database of its own."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from orchestration_service.config import load_settings
from orchestration_service.db.migrate import alembic_config, upgrade
from tests.conftest import PG_ADMIN_URL, missing_service


@pytest.fixture(params=["sqlite", "postgresql"])
async def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'migrations.db'}"
        return
    name = f"orch_migrations_{secrets.token_hex(4)}"
    admin = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        await admin.dispose()
        missing_service("PostgreSQL", exc)
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        async with admin.connect() as conn:
            await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.dispose()


async def migrate(url: str, revision: str) -> None:
    # Alembic's env runs its own event loop: keep it off this one.
    await asyncio.to_thread(upgrade, load_settings(storage={"database_url": url}).storage, revision)


async def downgrade(url: str, revision: str) -> None:
    from alembic import command

    await asyncio.to_thread(command.downgrade, alembic_config(url), revision)


async def execute(url: str, sql: str, params: list[dict[str, object]] | None = None) -> list[sa.Row[object]]:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(sa.text(sql), params) if params else await conn.execute(sa.text(sql))
            return list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()


OUTBOX_ROW = (
    "INSERT INTO outbox (event_id, event_type, exchange, subject, project_id, envelope, created_at, seq,"
    " published_at) VALUES (:e, 'task.created', 'task.events', 's', 'p', '{}', :t, :seq, :pub)"
)


async def test_the_published_watermark_starts_before_the_first_unpublished_row(fresh_url: str) -> None:
    await migrate(fresh_url, "0005")
    t = datetime(2026, 11, 24, 10, tzinfo=UTC)
    rows: list[dict[str, object]] = [
        {"e": f"e{seq}", "t": t, "seq": seq, "pub": t if seq <= 3 else None} for seq in range(1, 6)
    ]
    rows.append({"e": "unsequenced", "t": t, "seq": None, "pub": None})
    await execute(fresh_url, OUTBOX_ROW, rows)

    await migrate(fresh_url, "head")
    assert await execute(fresh_url, "SELECT id, published_seq FROM relay_progress") == [(1, 3)]
    # Nothing was lost: the same six rows, their numbers unchanged.
    seqs = [r[0] for r in await execute(fresh_url, "SELECT seq FROM outbox ORDER BY id")]
    assert seqs == [1, 2, 3, 4, 5, None]

    await downgrade(fresh_url, "0005")
    published = await execute(fresh_url, "SELECT seq FROM outbox WHERE published_at IS NOT NULL ORDER BY seq")
    assert [r[0] for r in published] == [1, 2, 3]


async def test_with_everything_published_the_watermark_is_the_last_number(fresh_url: str) -> None:
    await migrate(fresh_url, "0005")
    t = datetime(2026, 11, 24, 10, tzinfo=UTC)
    await execute(fresh_url, OUTBOX_ROW, [{"e": f"e{s}", "t": t, "seq": s, "pub": t} for s in (1, 2)])
    await migrate(fresh_url, "head")
    assert await execute(fresh_url, "SELECT published_seq FROM relay_progress") == [(2,)]


async def test_an_empty_log_starts_at_zero(fresh_url: str) -> None:
    await migrate(fresh_url, "head")
    assert await execute(fresh_url, "SELECT published_seq FROM relay_progress") == [(0,)]


async def test_provenance_ids_become_the_projects_and_the_data_survives(fresh_url: str) -> None:
    """0008: artifact, cascade and rollback ids keyed by project. Rows present before keep
    their data (project filled from the record); an edge a global artifact id made between
    two projects becomes an unresolved input, resolved within the project when it can be."""
    await migrate(fresh_url, "0007")
    t = datetime(2026, 11, 24, 10, tzinfo=UTC)
    p_rec, q_use, q_rec = (f"00000000-0000-4000-8000-00000000000{i}" for i in (1, 2, 3))
    rec = (
        "INSERT INTO provenance_records (id, task_id, project_id, status, created_at, verification_status,"
        " is_tainted, is_suspect, outputs) VALUES (:id, 't', :p, 'completed', :t, 'passed', false, false, :o)"
    )
    await execute(
        fresh_url,
        rec,
        [
            {"id": p_rec, "p": "P", "t": t, "o": '[{"artifact_id": "art-x"}]'},
            {"id": q_use, "p": "Q", "t": t, "o": '[{"artifact_id": "art-q"}]'},
            {"id": q_rec, "p": "Q", "t": t, "o": '[{"artifact_id": "art-x"}]'},
        ],
    )
    await execute(
        fresh_url,
        "INSERT INTO provenance_artifacts (artifact_id, provenance_id) VALUES ('art-x', :a), ('art-q', :b)",
        [{"a": p_rec, "b": q_use}],
    )
    await execute(
        fresh_url,
        "INSERT INTO artifact_dependencies (artifact_id, depends_on, dependency_type, via_artifact_id)"
        " VALUES (:q, :p, 'consumed', 'art-x')",
        [{"q": q_use, "p": p_rec}],
    )
    await execute(
        fresh_url,
        "INSERT INTO taint_cascades (id, kind, rollback_id, project_id, provenance_id, created_at)"
        " VALUES ('c-1', 'taint', NULL, NULL, :p, :t), ('rb-1', 'rollback', 'rb-1', 'Q', NULL, :t)",
        [{"p": p_rec, "t": t}],
    )

    await migrate(fresh_url, "head")
    artifacts = await execute(
        fresh_url, "SELECT project_id, artifact_id, provenance_id FROM provenance_artifacts ORDER BY 1, 2"
    )
    assert [(p, a, str(r)) for p, a, r in artifacts] == [
        ("P", "art-x", p_rec),
        ("Q", "art-q", q_use),
        ("Q", "art-x", q_rec),
    ]
    edges = await execute(
        fresh_url, "SELECT artifact_id, depends_on, via_artifact_id FROM artifact_dependencies"
    )
    assert [(str(a), str(d), v) for a, d, v in edges] == [(q_use, q_rec, "art-x")]
    assert await execute(fresh_url, "SELECT count(*) FROM provenance_unresolved_inputs") == [(0,)]
    cascades = await execute(fresh_url, "SELECT project_id, id FROM taint_cascades ORDER BY 2")
    assert [tuple(c) for c in cascades] == [("P", "c-1"), ("Q", "rb-1")]
    # The same ids in another project are other rows now.
    await execute(
        fresh_url,
        "INSERT INTO taint_cascades (id, kind, rollback_id, project_id, created_at)"
        " VALUES ('rb-1', 'rollback', 'rb-1', 'P', :t)",
        [{"t": t}],
    )

    await downgrade(fresh_url, "0007")
    assert len(await execute(fresh_url, "SELECT id FROM provenance_records")) == 3
    kept = await execute(fresh_url, "SELECT artifact_id, provenance_id FROM provenance_artifacts ORDER BY 1")
    assert [(a, str(r)) for a, r in kept] == [("art-q", q_use), ("art-x", p_rec)]
    assert len(await execute(fresh_url, "SELECT id FROM taint_cascades")) == 2


# -- 0009: processed_events keyed by (project_id, event_id) ------------------------------------


def _before_0009() -> str:
    """The revision 0009 follows (read from the script, so a re-chained 0009 still works)."""
    from alembic.script import ScriptDirectory

    revision = ScriptDirectory.from_config(alembic_config("sqlite://")).get_revision("0009")
    assert revision is not None and isinstance(revision.down_revision, str)
    return revision.down_revision


TASK_ROW = (
    "INSERT INTO tasks (id, project_id, description, priority, priority_rank, status, options,"
    " max_attempts, timeout_seconds, created_at, updated_at)"
    " VALUES (:id, :p, 'd', 'normal', 1, 'completed', '{}', 3, 60, :t, :t)"
)
HISTORY_ROW = (
    "INSERT INTO task_history (task_id, to_status, cause, created_at) VALUES (:task, 'completed', :cause, :t)"
)
CASCADE_ROW = (
    "INSERT INTO taint_cascades (id, kind, project_id, event_id, created_at) VALUES (:id, :kind, :p, :e, :t)"
)
PROCESSED_ROW = (
    "INSERT INTO processed_events (event_id, event_type, source, outcome, processed_at)"
    " VALUES (:e, :type, 'w', 'processed', :t)"
)


async def test_processed_events_are_attributed_to_their_projects(fresh_url: str) -> None:
    await migrate(fresh_url, _before_0009())
    t = datetime(2026, 12, 6, 10, tzinfo=UTC)
    a, b = uuid.uuid4(), uuid.uuid4()
    long_id = "x" * 240  # "event:task.failed:" + this is longer than a cause holds
    await execute(fresh_url, TASK_ROW, [{"id": a.hex, "p": "pa", "t": t}, {"id": b.hex, "p": "pb", "t": t}])
    history = [
        (a, "event:task.output.created:e1"),
        (a, "event:task.validated:e2"),
        (b, "event:task.validated:e2"),  # a later row with the same cause (a dependent): not the event's task
        (b, "event:task.rejected:e3"),
        (b, f"event:task.failed:{long_id}"[:255]),
        (b, "api"),
    ]
    await execute(
        fresh_url, HISTORY_ROW, [{"task": task.hex, "cause": cause, "t": t} for task, cause in history]
    )
    cascades = [("c1", "rollback", "pr", "r1"), ("c2", "rollback", "px", "r2"), ("c3", "taint", "py", "r2")]
    await execute(
        fresh_url, CASCADE_ROW, [{"id": i, "kind": k, "p": p, "e": e, "t": t} for i, k, p, e in cascades]
    )
    events = {
        "e1": "task.output.created",
        "e2": "task.validated",
        "e3": "task.rejected",
        "e4": "task.failed",  # its task is gone: no history
        long_id: "task.failed",
        "r1": "rollback.requested",
        "r2": "rollback.requested",
        "r3": "rollback.requested",  # changed nothing: no cascade of its own
    }
    await execute(fresh_url, PROCESSED_ROW, [{"e": e, "type": kind, "t": t} for e, kind in events.items()])

    await migrate(fresh_url, "0009")
    rows = await execute(fresh_url, "SELECT event_id, project_id FROM processed_events")
    assert dict(rows) == {
        "e1": "pa",
        "e2": "pa",
        "e3": "pb",
        "e4": "",
        long_id: "",
        "r1": "pr",
        "r2": "py",  # the targeted part's project wins
        "r3": "",
    }
    # The key is (project_id, event_id): the same id in another project is another row.
    later = datetime(2026, 12, 6, 11, tzinfo=UTC)
    await execute(
        fresh_url,
        "INSERT INTO processed_events (project_id, event_id, event_type, outcome, processed_at)"
        " VALUES ('pb', 'e1', 'task.output.created', 'processed', :t)",
        [{"t": later}],
    )
    with pytest.raises(sa.exc.IntegrityError):
        await execute(
            fresh_url,
            "INSERT INTO processed_events (project_id, event_id, event_type, outcome, processed_at)"
            " VALUES ('pb', 'e1', 'task.output.created', 'processed', :t)",
            [{"t": later}],
        )

    # Down again: one row per id, the oldest claim kept; and up again, attributed again.
    await downgrade(fresh_url, _before_0009())
    rows = await execute(
        fresh_url, "SELECT event_id, processed_at FROM processed_events WHERE event_id = 'e1'"
    )
    assert len(rows) == 1
    assert len(await execute(fresh_url, "SELECT event_id FROM processed_events")) == len(events)
    await migrate(fresh_url, "0009")
    rows = await execute(fresh_url, "SELECT project_id FROM processed_events WHERE event_id = 'e1'")
    assert rows == [("pa",)]


async def test_processed_events_key_matches_the_table_definition(fresh_url: str) -> None:
    from orchestration_service.db.tables import processed_events

    await migrate(fresh_url, "head")
    engine = create_async_engine(fresh_url)
    try:
        async with engine.connect() as conn:
            pk = await conn.run_sync(lambda c: sa.inspect(c).get_pk_constraint("processed_events"))
            columns = await conn.run_sync(lambda c: sa.inspect(c).get_columns("processed_events"))
    finally:
        await engine.dispose()
    assert pk["constrained_columns"] == [c.name for c in processed_events.primary_key.columns]
    assert {c["name"] for c in columns} == set(processed_events.c.keys())
    assert next(c for c in columns if c["name"] == "project_id")["nullable"] is False


# -- 0010: provenance_records loses the index on status -----------------------------------------
async def _record_indexes(url: str) -> set[str]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            found = await conn.run_sync(lambda c: sa.inspect(c).get_indexes("provenance_records"))
    finally:
        await engine.dispose()
    return {i["name"] for i in found if i["name"]}


async def test_the_records_indexes_match_the_table_definition_and_come_back_on_downgrade(
    fresh_url: str,
) -> None:
    from orchestration_service.db.tables import provenance_records

    await migrate(fresh_url, "head")
    assert await _record_indexes(fresh_url) == {i.name for i in provenance_records.indexes}
    assert "ix_provenance_records_status" not in await _record_indexes(fresh_url)
    await downgrade(fresh_url, "0009")
    assert "ix_provenance_records_status" in await _record_indexes(fresh_url)
