"""The client library's task stream with a deadline, when the service sends keep-alives more
often than the deadline: they reset the read timeout, so the deadline is checked on each of
them (``wait`` and ``follow_task`` waited forever, and so did ``task submit --wait --timeout``)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestration_service.client import AsyncClient, Client
from tests.process import ServerProcess


@pytest.fixture
def server(clean_db: str, tmp_path: Path) -> Iterator[ServerProcess]:
    env = {"ORCH_DATABASE_URL": clean_db, "ORCH_EVENTS__SSE_HEARTBEAT_SECONDS": "0.2"}
    with ServerProcess(env, log_path=tmp_path / "server.log").start() as s:
        yield s


def test_the_deadline_holds_on_a_stream_of_keep_alives(server: ServerProcess) -> None:
    outcome: list[object] = []

    def follow() -> None:
        with Client(server.url) as api:
            task_id = api.submit("Nobody works on it", "keepalive").task_id
            seen = []
            try:
                for event in api.follow_task(task_id, timeout=1):
                    seen.append(event.event)
            except TimeoutError:
                outcome.append(seen[0])  # then maybe its dispatch (pending -> running), never final
            try:
                api.wait(task_id, timeout=1)
            except TimeoutError:
                outcome.append("wait")

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    thread.join(30)  # a bound on a hang, not a timing target: each wait is 1 s
    assert not thread.is_alive(), "follow_task or wait ignored its timeout"
    assert outcome == ["snapshot", "wait"]


async def test_the_async_deadline_holds_on_a_stream_of_keep_alives(server: ServerProcess) -> None:
    async with AsyncClient(server.url) as api:
        task_id = (await api.submit("Nobody works on it either", "keepalive")).task_id
        started = time.monotonic()
        with pytest.raises(TimeoutError) as caught:
            # A bound on a hang; its own TimeoutError would carry no "after the timeout".
            await asyncio.wait_for(api.wait(task_id, timeout=1), 30)
        assert "after the timeout" in str(caught.value), time.monotonic() - started
