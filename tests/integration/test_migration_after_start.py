"""A replica of a new version started with ``--no-migrate`` before its migration ran (applying
deploy/kubernetes/ starts the Deployment and the migration Job together), on a database one
migration behind: unready until ``db upgrade`` has run, then ready and holding its bootstrap
key, without a restart. Real processes, both backends."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import PG_ADMIN_URL, missing_service
from tests.process import BIN, ServerProcess
from tests.revisions import previous_revision
from tests.waiting import eventually_sync

ADMIN_KEY = "m" * 40


async def _admin(sql: str) -> None:
    engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql(sql)
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database no migration has touched."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'unmigrated.db'}"
        return
    name = f"orch_test_unmigrated_{uuid.uuid4().hex[:10]}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        missing_service("PostgreSQL", exc)
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _cli(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [str(BIN), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr


def _ready(server: ServerProcess) -> int:
    try:
        return httpx.get(f"{server.url}/api/v1/health/ready", timeout=5).status_code
    except httpx.HTTPError:
        return 0


def test_a_replica_becomes_ready_once_the_migration_has_run(empty_database: str, tmp_path: Path) -> None:
    env = {
        "ORCH_DATABASE_URL": empty_database,
        "ORCH_AUTH_ENABLED": "true",
        "ORCH_AUTH__BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
    }
    server = ServerProcess(env, log_path=tmp_path / "server.log")
    _cli(server.env, "db", "upgrade", previous_revision())
    with server.start("--no-migrate"):
        assert _ready(server) == 503, "unmigrated: not ready"
        assert _ready(server) == 503, "asked again: still not ready"
        migrate = subprocess.run(
            [str(BIN), "db", "upgrade"],
            env=server.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert migrate.returncode == 0, migrate.stderr
        eventually_sync(lambda: _ready(server) == 200, timeout=30, what="ready after the migration")
        # The bootstrap key, which could not be stored at start, is stored now.
        with server.client(headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as c:
            created = c.post("/api/v1/tasks", json={"description": "after migration", "project_id": "k8s"})
            assert created.status_code == 201, created.text
        assert server.terminate() == 0


def test_db_wait_returns_once_the_migration_has_run(empty_database: str, tmp_path: Path) -> None:
    env = ServerProcess({"ORCH_DATABASE_URL": empty_database}).env
    waiting = subprocess.Popen(
        [str(BIN), "db", "wait", "--timeout", "120", "--interval", "0.2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Not migrated: it keeps waiting (it has not exited) until the migration runs.
        _cli(env, "db", "upgrade", previous_revision())
        assert waiting.poll() is None, "db wait returned before the schema was current"
        _cli(env, "db", "upgrade")
        out, err = waiting.communicate(timeout=120)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait(10)
    assert waiting.returncode == 0, err
    assert "database at head" in out


def test_db_wait_gives_up_after_its_timeout(empty_database: str) -> None:
    env = ServerProcess({"ORCH_DATABASE_URL": empty_database}).env
    done = subprocess.run(
        [str(BIN), "db", "wait", "--timeout", "1", "--interval", "0.2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "database not migrated after 1s" in done.stderr
