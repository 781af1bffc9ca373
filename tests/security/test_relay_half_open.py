"""Issue 16, defect 11: a relay leader behind a half-open connection (open, but passing no
bytes) steps down within seconds, and another replica takes the leadership over and publishes.

A small TCP proxy (tests/faultproxy.py) between one relay and PostgreSQL "blackholes": it
keeps every connection open and stops passing bytes, as a network that drops packets without
a reset does. The server's side of the connection (to the proxy) stays healthy, so only the
service's own checks can notice: the leader's periodic check on its lock connection, and a follower ending
a leader session that has gone silent."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from sqlalchemy.engine import make_url

from orchestration_service.db.engine import Database, create_engine
from orchestration_service.events.memory import MemoryBus
from orchestration_service.events.publisher import OutboxRelay
from orchestration_service.repositories.storage import SqlStorage
from tests.conftest import make_settings, start_service, truncate_all
from tests.faultproxy import FaultProxy

FAST = {"relay_leader_check_seconds": 0.5, "relay_leader_timeout_seconds": 2.0}
STEP_DOWN_BOUND = 30.0  # the bound; with the settings above it takes a few seconds


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not condition():
        if loop.time() - start > timeout:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.05)
    return loop.time() - start


async def test_a_leader_behind_a_half_open_connection_steps_down_and_another_takes_over(pg_url: str) -> None:
    await truncate_all(pg_url)
    url = make_url(pg_url)
    proxy = await FaultProxy(url.host or "127.0.0.1", url.port or 5432).start()
    proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
    # Replica A: only its relay, every connection through the proxy.
    settings_a = make_settings(proxied, events=FAST, storage={"connect_timeout_seconds": 2.0})
    db_a = Database(create_engine(settings_a.storage), storage=settings_a.storage)
    relay_a = OutboxRelay(SqlStorage(db_a), MemoryBus(), settings_a)
    relay_a.start()
    svc_b = lifespan_b = None
    try:
        await wait_until(lambda: relay_a.is_leader, 10, "A leads")
        # Replica B: the whole service, straight to PostgreSQL; a follower while A leads.
        svc_b, lifespan_b = await start_service(make_settings(pg_url, events=FAST))
        relay_b = svc_b.container.relay
        bus_b = svc_b.container.bus
        assert isinstance(bus_b, MemoryBus)
        assert not relay_b.is_leader

        proxy.blackhole()
        r = await svc_b.client.post(
            "/api/v1/tasks", json={"description": "after the fault", "project_id": "p"}
        )
        assert r.status_code == 201, r.text
        task_id = r.json()["task_id"]

        stepped_down = await wait_until(lambda: not relay_a.is_leader, STEP_DOWN_BOUND, "A steps down")
        took_over = await wait_until(lambda: relay_b.is_leader, STEP_DOWN_BOUND, "B takes over")
        await wait_until(
            lambda: any(m.envelope.get("subject") == task_id for m in bus_b.published),
            STEP_DOWN_BOUND,
            "B publishes the task's events",
        )
        print(f"A stepped down after {stepped_down:.1f}s; B led after {took_over:.1f}s")
    finally:
        proxy.heal()
        await relay_a.stop(flush_timeout=1)
        await db_a.close()
        if svc_b is not None and lifespan_b is not None:
            await svc_b.client.aclose()
            await lifespan_b.__aexit__(None, None, None)
        with contextlib.suppress(Exception):
            await proxy.close()


async def test_own_connections_carry_keepalives_and_timeouts(pg_url: str) -> None:
    settings = make_settings(
        pg_url,
        storage={
            "keepalive_idle_seconds": 7,
            "keepalive_interval_seconds": 3,
            "keepalive_count": 4,
            "tcp_user_timeout_seconds": 9,
            "statement_timeout_seconds": 11,
            "idle_in_transaction_timeout_seconds": 13,
        },
    )
    db = Database(create_engine(settings.storage), storage=settings.storage)
    conn = await db.connect_own("orchestration-test")
    try:
        shown = {
            name: await conn.fetchval(f"SHOW {name}")
            for name in (
                "tcp_keepalives_idle",
                "tcp_keepalives_interval",
                "tcp_keepalives_count",
                "tcp_user_timeout",
                "statement_timeout",
                "idle_in_transaction_session_timeout",
            )
        }
        assert shown == {
            "tcp_keepalives_idle": "7",
            "tcp_keepalives_interval": "3",
            "tcp_keepalives_count": "4",
            "tcp_user_timeout": "9000",  # shown in its unit, ms
            "statement_timeout": "11s",
            "idle_in_transaction_session_timeout": "13s",
        }
        import socket

        sock = conn._transport.get_extra_info("socket")  # type: ignore[attr-defined]
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 7
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 3
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 4
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 9000
    finally:
        await conn.close()
        await db.close()
