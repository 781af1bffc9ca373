"""Real processes: tasks survive restarts and kills; SIGTERM finishes in-flight requests."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import httpx

from tests.process import ServerProcess
from tests.waiting import eventually_sync


def test_tasks_survive_sigterm_and_sigkill(clean_db: str, tmp_path: Path) -> None:
    env = {"ORCH_DATABASE_URL": clean_db}
    server = ServerProcess(env, log_path=tmp_path / "server.log")
    with server.start():
        with server.client() as c:
            ids = [
                c.post("/api/v1/tasks", json={"description": f"task {i}", "project_id": "persist"}).json()[
                    "task_id"
                ]
                for i in range(5)
            ]
            c.post(f"/api/v1/tasks/{ids[0]}/cancel")
        assert server.terminate() == 0

    with ServerProcess(env, port=server.port, log_path=tmp_path / "server.log").start(
        "--no-migrate"
    ) as again:
        with again.client() as c:
            page = c.get("/api/v1/tasks", params={"project_id": "persist"}).json()
            assert sorted(t["task_id"] for t in page["items"]) == sorted(ids)
            assert c.get(f"/api/v1/tasks/{ids[0]}").json()["status"] == "cancelled"
            history = c.get(f"/api/v1/tasks/{ids[0]}/history").json()["items"]
            assert [h["to"] for h in history][-1] == "cancelled"
            extra = c.post("/api/v1/tasks", json={"description": "after", "project_id": "persist"}).json()
        again.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        again.proc.wait(10)  # type: ignore[union-attr]

    with ServerProcess(env, log_path=tmp_path / "server.log").start() as third, third.client() as c:
        assert c.get(f"/api/v1/tasks/{extra['task_id']}").status_code == 200
        assert c.get("/api/v1/tasks", params={"project_id": "persist"}).json()["total"] == 6


def test_sigterm_lets_in_flight_requests_finish(clean_db: str, tmp_path: Path) -> None:
    server = ServerProcess({"ORCH_DATABASE_URL": clean_db}, log_path=tmp_path / "server.log").start()
    results: list[int] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            while not stop.is_set():
                try:
                    r = c.post("/api/v1/tasks", json={"description": "load", "project_id": "shutdown"})
                    results.append(r.status_code)
                except httpx.TransportError:
                    return  # the server stopped accepting: expected after SIGTERM

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    # The load is under way (SIGTERM lands among requests in flight), however slow the machine.
    eventually_sync(lambda: len(results) >= 20, timeout=30, what="submissions acknowledged")
    assert server.terminate() == 0
    stop.set()
    for t in threads:
        t.join(10)
    assert results and set(results) == {201}, f"a request failed during shutdown: {set(results)}"
    with ServerProcess({"ORCH_DATABASE_URL": clean_db}).start("--no-migrate") as again, again.client() as c:
        stored = c.get("/api/v1/tasks", params={"project_id": "shutdown", "limit": 1}).json()["total"]
    assert stored == len(results), "every acknowledged submission is stored"
