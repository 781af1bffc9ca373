"""Issue 16, defect 8: `serve` on a non-loopback address with auth off refuses to start unless
told it is on purpose (then warns at every start); a bootstrap admin key from the environment
is stored hashed at start, once, so a deployment (compose) can run with auth on from its
first start."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from orchestration_service.cli import is_loopback
from orchestration_service.db.engine import Database, create_engine
from orchestration_service.db.tables import api_keys
from orchestration_service.repositories.storage import SqlStorage
from orchestration_service.services.auth import BOOTSTRAP_KEY_NAME, ApiKeyService, hash_key
from tests.conftest import make_settings, start_service, truncate_all
from tests.process import BIN, ServerProcess, free_port

BOOTSTRAP = "b" * 40  # a test value, not a credential
INSECURE_WARNING = "INSECURE: listening on 0.0.0.0 with auth off"


def _serve_env(tmp_path: Path, **env: str) -> dict[str, str]:
    server = ServerProcess({"ORCH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/o.db", **env})
    return server.env


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "orch.example"])
def test_serve_on_a_non_loopback_address_without_auth_refuses_to_start(tmp_path: Path, host: str) -> None:
    # Refused before anything listens or connects (192.0.2.0/24 is documentation-only).
    env = _serve_env(tmp_path, ORCH_HOST=host, ORCH_PORT=str(free_port()))
    done = subprocess.run(
        [str(BIN), "serve"], env=env, capture_output=True, text=True, timeout=20, check=False
    )
    assert done.returncode != 0
    assert f"refusing to listen on {host} with auth off" in done.stderr
    assert "ORCH_AUTH_ALLOW_INSECURE=true" in done.stderr
    assert not (tmp_path / "o.db").exists(), "refused before touching the database"


@pytest.mark.parametrize(
    ("args", "env"),
    [(["--insecure"], {}), ([], {"ORCH_AUTH_ALLOW_INSECURE": "true"})],
    ids=["--insecure", "ORCH_AUTH_ALLOW_INSECURE"],
)
def test_insecure_on_purpose_starts_and_warns(tmp_path: Path, args: list[str], env: dict[str, str]) -> None:
    log = tmp_path / "serve.log"
    server = ServerProcess(
        {"ORCH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/o.db", "ORCH_HOST": "0.0.0.0", **env},
        log_path=log,
    )
    with server.start(*args):
        assert httpx.get(f"{server.url}/api/v1/tasks", timeout=5).status_code == 200
    assert INSECURE_WARNING in log.read_text()


def test_loopback_without_auth_starts_without_a_warning(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    server = ServerProcess({"ORCH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/o.db"}, log_path=log)
    with server.start():
        assert httpx.get(f"{server.url}/api/v1/tasks", timeout=5).status_code == 200
    assert "INSECURE" not in log.read_text()


def test_every_interface_with_auth_and_a_bootstrap_key_starts_and_the_key_works(tmp_path: Path) -> None:
    # The compose stack's configuration, on SQLite.
    log = tmp_path / "serve.log"
    server = ServerProcess(
        {
            "ORCH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/o.db",
            "ORCH_HOST": "0.0.0.0",
            "ORCH_AUTH_ENABLED": "true",
            "ORCH_AUTH__BOOTSTRAP_ADMIN_KEY": BOOTSTRAP,
        },
        log_path=log,
    )
    with server.start():
        assert httpx.get(f"{server.url}/api/v1/tasks", timeout=5).status_code == 401
        with server.client(headers={"Authorization": f"Bearer {BOOTSTRAP}"}) as c:
            assert c.get("/api/v1/tasks").status_code == 200
            r = c.post("/api/v1/tasks", json={"description": "d", "project_id": "any"})
            assert r.status_code == 201, r.text
    text = log.read_text()
    assert "INSECURE" not in text
    assert BOOTSTRAP not in text, "the key itself is never logged"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("localhost.example", False),
        ("", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


# -- the bootstrap key, on both backends ---------------------------------------------------------


async def _rows(url: str) -> list[sa.Row[tuple[object, ...]]]:
    db = Database(create_engine(make_settings(url).storage))
    try:
        async with db.read() as conn:
            return list(
                await conn.execute(sa.select(api_keys.c.name, api_keys.c.key_hash, api_keys.c.revoked_at))
            )
    finally:
        await db.close()


async def test_bootstrap_key_is_stored_hashed_once_even_by_replicas_starting_together(
    database_url: str,
) -> None:
    await truncate_all(database_url)
    dbs = [Database(create_engine(make_settings(database_url).storage)) for _ in range(3)]
    try:
        stored = await asyncio.gather(
            *(ApiKeyService(SqlStorage(db)).ensure_bootstrap(BOOTSTRAP) for db in dbs)
        )
        assert sorted(stored) == [False, False, True]
        assert not await ApiKeyService(SqlStorage(dbs[0])).ensure_bootstrap(BOOTSTRAP)
        principal = await ApiKeyService(SqlStorage(dbs[1])).authenticate(BOOTSTRAP)
        assert principal is not None and principal.scope.value == "admin" and principal.projects is None
    finally:
        for db in dbs:
            await db.close()
    rows = await _rows(database_url)
    assert [(r.name, r.key_hash) for r in rows] == [(BOOTSTRAP_KEY_NAME, hash_key(BOOTSTRAP))]


async def test_a_revoked_bootstrap_key_stays_revoked_across_restarts(database_url: str) -> None:
    await truncate_all(database_url)
    settings = make_settings(database_url, auth={"enabled": True, "bootstrap_admin_key": BOOTSTRAP})
    svc, lifespan = await start_service(settings)
    try:
        auth = {"Authorization": f"Bearer {BOOTSTRAP}"}
        assert (await svc.client.get("/api/v1/tasks", headers=auth)).status_code == 200
        (row,) = await svc.container.keys.list()
        await svc.container.keys.revoke(row.id)
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)
    svc, lifespan = await start_service(settings)  # a restart with the same setting
    try:
        assert (await svc.client.get("/api/v1/tasks", headers=auth)).status_code == 401
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)


async def test_a_short_bootstrap_key_is_refused_without_echoing_it(sqlite_url: str) -> None:
    db = Database(create_engine(make_settings(sqlite_url).storage))
    try:
        with pytest.raises(ValueError, match="at least 32 characters") as refused:
            await ApiKeyService(SqlStorage(db)).ensure_bootstrap("short-secret")
        assert "short-secret" not in str(refused.value)
    finally:
        await db.close()


async def test_the_placeholder_of_env_example_is_refused_as_a_bootstrap_key(sqlite_url: str) -> None:
    """.env.example is public: a compose deployment that kept its placeholder would start
    with an admin key everybody knows."""
    placeholder = next(
        line.split("=", 1)[1].strip()
        for line in (Path(__file__).parents[2] / ".env.example").read_text().splitlines()
        if line.startswith("ORCH_BOOTSTRAP_ADMIN_KEY=")
    )
    db = Database(create_engine(make_settings(sqlite_url).storage))
    try:
        with pytest.raises(ValueError, match="placeholder") as refused:
            await ApiKeyService(SqlStorage(db)).ensure_bootstrap(placeholder)
        assert placeholder not in str(refused.value)
        assert hash_key(placeholder) not in [r.key_hash for r in await _rows(sqlite_url)]
    finally:
        await db.close()
