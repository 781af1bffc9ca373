"""Issue 21: readiness tells the truth. During a database or broker outage /health/ready
answers 503 (a load balancer stops sending), /health/live stays 200 (nothing restarts a
replica that recovers by itself), and both recover without a restart.

The outages come from a fault proxy (tests/faultproxy.py) between the service and the
machine's PostgreSQL or RabbitMQ, which is never restarted."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time

import aio_pika
import pytest
from sqlalchemy.engine import make_url
from yarl import URL

from tests.conftest import AMQP_URL, Service, make_settings, missing_service, start_service, truncate_all
from tests.faultproxy import FaultProxy
from tests.integration.test_rabbitmq_bus import delete_topology
from tests.waiting import eventually

PROMPT = 1.0  # liveness, and each readiness answer, within this
OUTAGE_SEEN = 5.0  # readiness says 503 within this of the outage
RECOVERED = 15.0  # and 200 again within this of its end (the broker reconnects every 2 s)


async def _status(svc: Service, path: str) -> int:
    async with asyncio.timeout(PROMPT + 1.0):
        return (await svc.client.get(path)).status_code


async def _ready_is(svc: Service, status: int, within: float, what: str) -> float:
    start = time.monotonic()
    await eventually(lambda: _is(svc, status), timeout=within, interval=0.1, what=what)
    return time.monotonic() - start


async def _is(svc: Service, status: int) -> bool:
    assert await _status(svc, "/api/v1/health/live") == 200  # all along
    return await _status(svc, "/api/v1/health/ready") == status


async def test_readiness_follows_a_database_that_refuses_connections(pg_url: str) -> None:
    await truncate_all(pg_url)
    url = make_url(pg_url)
    proxy = await FaultProxy(url.host or "127.0.0.1", url.port or 5432).start()
    proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
    settings = make_settings(
        proxied, storage={"connect_timeout_seconds": 1.0, "ping_timeout_seconds": PROMPT}
    )
    svc, lifespan = await start_service(settings)
    try:
        await _ready_is(svc, 200, 10, "ready at start")
        proxy.refuse()  # open connections reset, new ones refused
        down = await _ready_is(svc, 503, OUTAGE_SEEN, "ready 503 while the database refuses")
        proxy.heal()
        up = await _ready_is(svc, 200, RECOVERED, "ready again")
        print(f"database refused: ready 503 after {down:.2f}s; 200 again {up:.2f}s after")
    finally:
        proxy.heal()
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)
        await proxy.close()


@pytest.mark.rabbitmq
async def test_readiness_follows_a_broker_outage(pg_url: str) -> None:
    try:
        conn = await aio_pika.connect(AMQP_URL, timeout=5)
        await conn.close()
    except Exception as exc:
        missing_service("RabbitMQ", exc)
    await truncate_all(pg_url)
    amqp = URL(AMQP_URL)
    proxy = await FaultProxy(amqp.host or "127.0.0.1", amqp.port or 5672).start()
    prefix = f"t{secrets.token_hex(4)}."
    broker_url = str(amqp.with_port(proxy.port))
    svc, lifespan = await start_service(
        make_settings(pg_url, events={"broker_url": broker_url, "name_prefix": prefix})
    )
    try:
        await _ready_is(svc, 200, 15, "ready at start (the consumer attached)")
        proxy.refuse()  # the broker's connection reset, reconnects refused
        down = await _ready_is(svc, 503, OUTAGE_SEEN, "ready 503 while the broker is away")
        await asyncio.sleep(3)  # deliberate: an outage spanning reconnect attempts
        assert await _is(svc, 503), "ready again while the broker is still away"
        proxy.heal()
        up = await _ready_is(svc, 200, RECOVERED, "ready again after the broker came back")
        print(f"broker refused: ready 503 after {down:.2f}s; 200 again {up:.2f}s after")
    finally:
        proxy.heal()
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)
        await proxy.close()
        with contextlib.suppress(Exception):
            await delete_topology(prefix)
