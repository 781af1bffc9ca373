"""Shared fixtures: real databases (SQLite file and a throwaway PostgreSQL database per run),
the app with its lifespan, and an HTTP client speaking to it in-process.

ORCH_REQUIRE_SERVICES=1 (CI) turns a missing PostgreSQL or RabbitMQ into a failure
instead of a skip.
"""

from __future__ import annotations

import asyncio
import gc
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from orchestration_service.config import Settings, load_settings
from orchestration_service.container import Container
from orchestration_service.db.migrate import upgrade
from orchestration_service.db.tables import metadata
from orchestration_service.main import create_app

REQUIRE_SERVICES = os.environ.get("ORCH_REQUIRE_SERVICES") == "1"
PG_ADMIN_URL = os.environ.get("ORCH_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("ORCH_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
RUN_ID = secrets.token_hex(3)


def missing_service(what: str, exc: BaseException) -> None:
    msg = f"{what} is not reachable ({type(exc).__name__}: {exc})"
    if REQUIRE_SERVICES:
        pytest.fail(msg + " and ORCH_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(msg)


def _without_orch_env() -> None:
    # Tests must not pick up a developer's ORCH_* settings or config file.
    for key in list(os.environ):
        if key.startswith("ORCH_") and key not in (
            "ORCH_REQUIRE_SERVICES",
            "ORCH_TEST_PG_URL",
            "ORCH_TEST_AMQP_URL",
        ):
            del os.environ[key]
    os.environ["ORCH_CONFIG"] = str(Path(__file__).parent / "empty-config.yaml")


_without_orch_env()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("db") / "orchestration.db"
    url = f"sqlite+aiosqlite:///{path}"
    upgrade(load_settings(storage={"database_url": url}).storage)
    return url


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    name = f"orch_test_{RUN_ID}"

    async def create() -> None:
        engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        finally:
            await engine.dispose()

    try:
        asyncio.run(create())
    except Exception as exc:  # connection refused, auth …
        missing_service("PostgreSQL", exc)
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    upgrade(load_settings(storage={"database_url": url}).storage)
    yield url

    async def drop() -> None:
        engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await engine.dispose()

    asyncio.run(drop())


async def truncate_all(url: str) -> None:
    if url.startswith("sqlite"):
        # A connection an earlier test's app leaked (an aiosqlite connection cancelled at
        # shutdown: SQLAlchemy's "non-checked-in connection" warning) can still hold the file's
        # write lock until the garbage collector ends it: end it now, and wait for a lock
        # rather than failing at once ("database is locked" in one CI run).
        gc.collect()
    engine = create_async_engine(url, connect_args={"timeout": 30} if url.startswith("sqlite") else {})
    try:
        async with engine.begin() as conn:
            existing = set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))
            names = [t.name for t in reversed(metadata.sorted_tables) if t.name in existing]
            if conn.dialect.name == "postgresql":
                await conn.exec_driver_sql(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE")
            else:
                for n in names:
                    await conn.exec_driver_sql(f"DELETE FROM {n}")
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs on both backends (``clean_db`` empties the tables)."""
    if request.param == "sqlite":
        url: str = request.getfixturevalue("sqlite_url")
    else:
        url = request.getfixturevalue("pg_url")
    return url


def make_settings(database_url: str, **sections: dict[str, Any]) -> Settings:
    base: dict[str, Any] = {
        "storage": {"database_url": database_url},
        "events": {"broker_url": "memory://", "relay_poll_seconds": 0.2},
        "task_management": {"sweep_interval_seconds": 0.2},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return load_settings(**base)


class Service:
    """The app running in-process with its lifespan, and a client for it."""

    def __init__(self, app: Any, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client

    @property
    def container(self) -> Container:
        c: Container = self.app.state.container
        return c


async def start_service(settings: Settings) -> tuple[Service, Any]:
    app = create_app(settings)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
    return Service(app, client), lifespan


@pytest.fixture
async def clean_db(database_url: str) -> str:
    await truncate_all(database_url)
    return database_url


@pytest.fixture
async def service(clean_db: str) -> AsyncIterator[Service]:
    svc, lifespan = await start_service(make_settings(clean_db))
    try:
        yield svc
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests run last: Playwright's sync API keeps an event loop running on the main
    thread while its session lasts, which the other suites' ``asyncio.run`` set-up cannot share."""
    items.sort(key=lambda item: "tests/browser/" in str(item.path).replace("\\", "/"))
