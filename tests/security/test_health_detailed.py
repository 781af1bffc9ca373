"""``/api/v1/health/detailed`` needs a key when auth is on, and whatever it shows carries no
credentials, raw exception texts or upstream bodies (issue 16, defect 5)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aio_pika
import asyncpg
import pytest
from yarl import URL

from orchestration_service.domain.access import Scope
from orchestration_service.redaction import reason
from tests.conftest import AMQP_URL, Service, make_settings, start_service
from tests.integration.fake_services import FakeService, Reply, dead_url
from tests.integration.test_tasks_api import submit, wait_for_status

SECRET = "S3cretPW-do-not-show"
UPSTREAM = "UPSTREAM-BODY-with-internal-detail"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeService]:
    fake = FakeService("leaky-agent")
    fake.start()
    yield fake
    fake.stop()


@contextlib.asynccontextmanager
async def _serve(db: str, **sections: dict[str, Any]) -> AsyncIterator[Service]:
    svc, lifespan = await start_service(make_settings(db, **sections))
    try:
        yield svc
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)


async def test_detailed_needs_a_key_of_any_scope_with_auth_on(clean_db: str) -> None:
    async with _serve(clean_db, auth={"enabled": True}) as svc:
        c = svc.client
        assert (await c.get("/api/v1/health/detailed")).status_code == 401
        assert (await c.get("/api/v1/health/detailed/")).status_code == 401
        for probe in ("/api/v1/health", "/api/v1/health/live", "/api/v1/health/ready"):
            assert (await c.get(probe)).status_code in (200, 503), probe  # no key needed
        raw, _ = await svc.container.keys.create(name="reader", scope=Scope.READ, projects=["p-a"])
        r = await c.get("/api/v1/health/detailed", headers={"Authorization": f"Bearer {raw}"})
        assert r.status_code == 200
        assert r.json()["dependencies"]["database"] == "connected"


async def test_detailed_shows_no_credentials_nor_upstream_bodies(
    clean_db: str, upstream: FakeService
) -> None:
    upstream.reset()
    upstream.answer("/analyze", Reply(status=400, json={"detail": UPSTREAM}))
    upstream.answer("/health", Reply(status=503, json={"detail": UPSTREAM}))
    with_secret = str(URL(upstream.url).with_user("svc").with_password(SECRET))
    routing = {
        "agent_service_url": with_secret,
        "rag_service_url": dead_url().replace("http://", f"http://svc:{SECRET}@"),
        "agent_timeout_seconds": 2.0,
        "rag_timeout_seconds": 2.0,
        "remote_retries": 0,
    }
    async with _serve(clean_db, routing=routing) as svc:
        # Before any call, the probes decide; after a failed call, its classified reason.
        first = (await svc.client.get("/api/v1/health/detailed")).text
        tid = (await submit(svc))["task_id"]
        await wait_for_status(svc, tid, "running")
        body = (await svc.client.get("/api/v1/health/detailed")).json()
        for text in (first, json.dumps(body)):
            assert SECRET not in text
            assert UPSTREAM not in text
            assert "Error" not in text, "an exception type or text reached the answer"
        agent = body["details"]["agent_service"]
        assert agent["url"] == upstream.url.replace("http://", "http://svc:***@")
        assert agent["last_error"] == "http 400"
        assert body["details"]["rag_service"]["last_error"] == "connection refused"
        assert json.loads(first)["details"]["agent_service"]["probe"] == "http 503"


async def test_broker_with_a_wrong_password_is_a_classified_reason(clean_db: str) -> None:
    try:
        await (await aio_pika.connect(AMQP_URL, timeout=5)).close()
    except Exception as exc:
        pytest.skip(f"RabbitMQ not available: {exc}")
    bad = str(URL(AMQP_URL).with_password(SECRET))
    async with _serve(clean_db, events={"broker_url": bad, "name_prefix": "bad-pw."}) as svc:
        deadline = asyncio.get_running_loop().time() + 15
        while True:
            body = (await svc.client.get("/api/v1/health/detailed")).json()
            if body["details"].get("broker") not in (None, "not connected"):
                break
            assert asyncio.get_running_loop().time() < deadline, body
            await asyncio.sleep(0.05)
        assert body["dependencies"]["broker"] == "disconnected"
        assert body["details"]["broker"] == "authentication failed"
        assert SECRET not in json.dumps(body)


async def test_a_refused_database_connection_is_classified() -> None:
    url = dead_url().replace("http://", f"postgresql://postgres:{SECRET}@").replace("/api/v1", "/db")
    with pytest.raises(OSError, match=r"111|refused|failed") as caught:
        await asyncpg.connect(url, timeout=5)
    assert reason(caught.value) == "connection refused"
    assert reason(TimeoutError()) == "timeout"
    assert reason(RuntimeError(f"boom postgresql://u:{SECRET}@h/db")) == "unexpected error (RuntimeError)"
