"""``db upgrade`` on SQLite while the service writes (``make run`` left running, or a replica
started with ``--no-migrate``): the migration must wait for the write lock, not fail with
"database is locked". It failed so in CI when the migration's transaction began DEFERRED: its
first read fixed a snapshot, a server write committed, and SQLite refuses to upgrade a stale
snapshot to a writer (SQLITE_BUSY_SNAPSHOT, without waiting on busy_timeout)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from orchestration_service.config import load_settings
from orchestration_service.db.migrate import current_revision, head_revision, upgrade
from tests.revisions import previous_revision


def test_a_migration_waits_for_a_writer_that_commits_meanwhile(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    settings = load_settings(storage={"database_url": f"sqlite+aiosqlite:///{path}"}).storage
    upgrade(settings, previous_revision())

    writer = sqlite3.connect(path, isolation_level=None, timeout=30)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("CREATE TABLE someone_elses_write (x INTEGER)")

    # The writer commits as soon as the migration has either asked for the write lock
    # (BEGIN IMMEDIATE: it then waits on busy_timeout) or read inside a deferred
    # transaction (its snapshot now predates the writer's commit).
    migration_went_ahead = threading.Event()

    def before(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("BEGIN IMMEDIATE"):
            migration_went_ahead.set()

    def after(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not statement.startswith("BEGIN"):
            migration_went_ahead.set()

    event.listen(Engine, "before_cursor_execute", before)
    event.listen(Engine, "after_cursor_execute", after)
    failure: list[BaseException] = []

    def migrate() -> None:
        try:
            upgrade(settings)
        except BaseException as exc:  # reported by the test's thread below
            failure.append(exc)

    migration = threading.Thread(target=migrate)
    try:
        migration.start()
        assert migration_went_ahead.wait(60), "the migration never started"
        writer.execute("COMMIT")
        migration.join(120)
    finally:
        event.remove(Engine, "before_cursor_execute", before)
        event.remove(Engine, "after_cursor_execute", after)
        writer.close()
    assert not migration.is_alive(), "the migration did not finish"
    assert failure == [], f"the migration failed: {failure[0]!r}" if failure else ""

    assert asyncio.run(current_revision(settings)) == head_revision()
