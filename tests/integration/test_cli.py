"""The command-line client end to end against a real server process (and, for the happy
path, the example HTTP worker): exit codes, --json, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.process import BIN, ServerProcess, free_port
from tests.waiting import eventually_sync

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(clean_db: str, tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess({"ORCH_DATABASE_URL": clean_db}, log_path=tmp_path / "server.log").start() as s:
        yield s


def cli(server: ServerProcess | None, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(Path(sys.executable).parent), "HOME": "/tmp", "COLUMNS": "200"}
    if server is not None:
        env["ORCH_URL"] = server.url
    return subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=timeout)


def sse_listeners(server: ServerProcess) -> int:
    """The streams the server is following (its /metrics gauge): a CLI waiting on a task
    stream shows here once it is open."""
    for line in httpx.get(f"{server.url}/metrics", timeout=5).text.splitlines():
        if line.startswith("orch_sse_listeners "):
            return int(float(line.split()[1]))
    raise AssertionError("/metrics has no orch_sse_listeners")


def assert_no_traceback(r: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr


@pytest.fixture
def worker(server: ServerProcess, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "examples" / "http_worker.py"),
            "--url",
            server.url,
            "--out",
            str(tmp_path / "art"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    yield proc
    proc.terminate()
    proc.wait(10)


def test_submit_wait_completes_with_the_example_worker(
    server: ServerProcess, worker: subprocess.Popen[str], tmp_path: Path
) -> None:
    r = cli(server, "task", "submit", "Write a fibonacci function", "--project", "demo", "--wait", "--json")
    assert_no_traceback(r)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["status"] == "completed" and doc["provenance_id"]
    artifact = Path(doc["artifacts"][0]["path"])
    assert artifact.exists() and doc["task_id"] in artifact.read_text()
    people = cli(server, "task", "get", doc["task_id"])
    assert people.returncode == 0 and "completed" in people.stdout
    history = cli(server, "task", "history", doc["task_id"], "--json")
    assert [h["to"] for h in json.loads(history.stdout)["items"]][-1] == "completed"
    prov = cli(server, "provenance", "get", doc["provenance_id"], "--json")
    assert json.loads(prov.stdout)["task_id"] == doc["task_id"]


def test_submit_prints_the_id_and_lists(server: ServerProcess) -> None:
    r = cli(server, "task", "submit", "Document the API", "--project", "cli", "--priority", "high")
    assert r.returncode == 0, r.stderr
    task_id = r.stdout.strip()
    assert len(task_id) == 36
    listing = json.loads(cli(server, "task", "ls", "--project", "cli", "--json").stdout)
    assert [t["task_id"] for t in listing["items"]] == [task_id]
    table = cli(server, "task", "ls", "--project", "cli")
    assert task_id in table.stdout and "high" in table.stdout
    projects = json.loads(cli(server, "project", "ls", "--json").stdout)
    assert [p["project_id"] for p in projects["items"]] == ["cli"]
    status = json.loads(cli(server, "project", "status", "cli", "--json").stdout)
    assert status["total"] == 1
    cancelled = cli(server, "task", "cancel", task_id, "--reason", "test", "--json")
    assert json.loads(cancelled.stdout)["status"] == "cancelled"
    again = cli(server, "task", "cancel", task_id)
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1 and "Transition not allowed" in again.stderr
    assert_no_traceback(again)


def test_wait_exit_codes_for_cancelled_and_timeout(server: ServerProcess) -> None:
    timed_out = cli(server, "task", "submit", "Never picked up", "--project", "t", "--wait", "--timeout", "1")
    assert timed_out.returncode == 4, timed_out.stderr
    assert "after 1s" in timed_out.stderr
    assert_no_traceback(timed_out)
    eventually_sync(lambda: sse_listeners(server) == 0, what="the timed-out CLI's stream to close")
    proc = subprocess.Popen(
        [
            str(BIN),
            "task",
            "submit",
            "To be cancelled",
            "--project",
            "c",
            "--wait",
            "--json",
            "--url",
            server.url,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    task_id = None
    for _ in range(100):
        listing = json.loads(cli(server, "task", "ls", "--project", "c", "--json").stdout)
        if listing["items"]:
            task_id = listing["items"][0]["task_id"]
            break
        time.sleep(0.1)
    assert task_id
    eventually_sync(lambda: sse_listeners(server) == 1, what="the waiting CLI's stream")
    assert cli(server, "task", "cancel", task_id).returncode == 0
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 3, stderr
    assert json.loads(stdout)["status"] == "cancelled"


def test_errors_are_one_line_with_exit_codes(server: ServerProcess) -> None:
    missing = cli(server, "task", "get", "00000000-0000-0000-0000-000000000000")
    assert missing.returncode == 1
    assert missing.stderr.strip().startswith("orchestration-service: Resource not found")
    assert_no_traceback(missing)
    bad = cli(server, "task", "submit", "x", "--project", "bad id!")
    assert bad.returncode == 1 and "Request validation failed" in bad.stderr
    usage = cli(server, "task", "submit")
    assert usage.returncode == 2
    url = f"http://127.0.0.1:{free_port()}"
    unreachable = cli(None, "task", "ls", "--url", url)
    assert unreachable.returncode == 1
    assert url in unreachable.stderr and unreachable.stderr.count("\n") == 1
    assert_no_traceback(unreachable)


def test_events_tail_and_watch(server: ServerProcess) -> None:
    task_id = cli(server, "task", "submit", "Tail me", "--project", "tail").stdout.strip()
    tail = cli(server, "events", "tail", "--after", "0", "--limit", "1", "--type", "task.created", "--json")
    assert tail.returncode == 0, tail.stderr
    lines = [json.loads(x) for x in tail.stdout.splitlines()]
    assert len(lines) == 1
    assert lines[0]["event"] == "task.created" and lines[0]["cloudevent"]["subject"] == task_id
    people = cli(server, "events", "tail", "--after", "0", "--limit", "3")
    assert people.returncode == 0 and people.stdout.count("\n") == 3 and "task.created" in people.stdout
    eventually_sync(lambda: sse_listeners(server) == 0, what="the tails' streams to close")
    watcher = subprocess.Popen(
        [str(BIN), "task", "watch", task_id, "--json", "--url", server.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    eventually_sync(lambda: sse_listeners(server) == 1, what="the watcher's stream")
    cli(server, "task", "cancel", task_id)
    stdout, _ = watcher.communicate(timeout=30)
    events = [json.loads(x) for x in stdout.splitlines()]
    assert events[0]["event"] == "snapshot"
    assert events[-1]["data"]["to"] == "cancelled"
    assert watcher.returncode == 3


def test_submit_wait_on_postgresql_and_rabbitmq(pg_url: str, tmp_path: Path) -> None:
    """The same loop with the service on PostgreSQL + RabbitMQ: the feed and the ingress
    work there too, so the example worker and the CLI need nothing else."""
    import asyncio
    import secrets

    from tests.conftest import AMQP_URL, truncate_all
    from tests.integration.test_rabbitmq_bus import delete_topology

    asyncio.run(truncate_all(pg_url))
    prefix = f"cli{secrets.token_hex(3)}."
    env = {"ORCH_DATABASE_URL": pg_url, "ORCH_BROKER_URL": AMQP_URL, "ORCH_EVENTS__NAME_PREFIX": prefix}
    try:
        with ServerProcess(env, log_path=tmp_path / "server.log").start() as server:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "examples" / "http_worker.py"),
                    "--url",
                    server.url,
                    "--out",
                    str(tmp_path),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                r = cli(server, "task", "submit", "Write a parser", "--project", "amqp", "--wait", "--json")
            finally:
                proc.terminate()
                proc.wait(10)
            assert r.returncode == 0, r.stderr
            assert json.loads(r.stdout)["status"] == "completed"
            health = json.loads(cli(server, "project", "status", "amqp", "--json").stdout)
            assert health["counts"]["completed"] == 1
    finally:
        asyncio.run(delete_topology(prefix))


def test_several_workers_need_postgresql(sqlite_url: str) -> None:
    env = {"PATH": str(Path(sys.executable).parent), "HOME": "/tmp", "ORCH_DATABASE_URL": sqlite_url}
    r = subprocess.run(
        [str(BIN), "serve", "--workers", "2", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "ORCH_WORKERS" in r.stderr and "PostgreSQL" in r.stderr, r.stderr
    assert_no_traceback(r)


def test_two_workers_on_postgresql_share_one_relay(pg_url: str, tmp_path: Path) -> None:
    """Two worker processes on the in-process bus: tasks submitted to either are routed and
    dispatched once each, and the event log numbers every event once (one relay leader)."""
    project = f"w2-{uuid.uuid4().hex[:8]}"  # the database is shared with other tests
    env = {"ORCH_DATABASE_URL": pg_url, "ORCH_BROKER_URL": "memory://"}
    with ServerProcess(env, log_path=tmp_path / "server.log").start("--workers", "2") as s:
        with httpx.Client(base_url=s.url, timeout=30) as client:
            ids = [
                client.post(
                    "/api/v1/tasks", json={"description": f"add a test {i}", "project_id": project}
                ).json()["task_id"]
                for i in range(20)
            ]
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                page = client.get("/api/v1/tasks", params={"project_id": project, "status": "running"}).json()
                if page["total"] == 10:  # the project's limit in flight, the rest waiting
                    break
                time.sleep(0.1)
            assert page["total"] == 10, page["total"]
            # A check that something does NOT happen: the pause gives a wrong second dispatch
            # time to show (too short a pause could only miss it, never fail falsely).
            time.sleep(0.5)
            for tid in ids:
                history = client.get(f"/api/v1/tasks/{tid}/history").json()["items"]
                assert sum(1 for h in history if h["to"] == "running") <= 1, history
            # 20 x (task.created, task.status.pending) + 10 x (task.status.running, task.ready)
            seqs: list[int] = []
            events: list[dict[str, object]] = []
            params = {"project_id": project, "after": 0, "limit": 60}
            with client.stream("GET", "/api/v1/events", params=params) as r:
                for line in r.iter_lines():
                    if line.startswith("id: "):
                        seqs.append(int(line[4:]))
                    elif line.startswith("data: "):
                        events.append(json.loads(line[6:]))
        assert len(events) == 60 and len(seqs) == 60
        assert len(set(seqs)) == 60 and seqs == sorted(seqs)
        ready = [e for e in events if str(e["type"]).startswith("dats.task.ready.")]
        assert len(ready) == 10 and len({e["subject"] for e in ready}) == 10


def test_task_retry_runs_a_cancelled_task_again_and_refuses_a_running_one(server: ServerProcess) -> None:
    task_id = cli(server, "task", "submit", "Retried by hand", "--project", "r").stdout.strip()
    assert cli(server, "task", "cancel", task_id).returncode == 0
    retried = cli(server, "task", "retry", task_id)
    assert_no_traceback(retried)
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.split()[0] == task_id and retried.stdout.split()[1] in ("pending", "running")
    # No worker here: it stays pending or running, so a second retry is refused (409), one line.
    waited = cli(server, "task", "retry", task_id, "--wait", "--timeout", "1")
    assert waited.returncode == 1 and "Transition not allowed" in waited.stderr
    assert "only a failed or cancelled task can be retried" in waited.stderr
    assert_no_traceback(waited)
    history = json.loads(cli(server, "task", "history", task_id, "--json").stdout)
    assert any(e["reason"] == "retry requested by anonymous" for e in history["items"])


def test_task_retry_wait_follows_the_new_attempt(server: ServerProcess, tmp_path: Path) -> None:
    task_id = cli(server, "task", "submit", "Retried and done", "--project", "rw").stdout.strip()
    assert cli(server, "task", "cancel", task_id).returncode == 0
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "examples" / "http_worker.py"),
            "--url",
            server.url,
            "--out",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        r = cli(server, "task", "retry", task_id, "--wait")
    finally:
        proc.terminate()
        proc.wait(10)
    assert_no_traceback(r)
    assert r.returncode == 0, r.stderr
    # The final document, as people read it: completed, with the worker's last progress report.
    assert "completed" in r.stdout and "50% writing the artifact" in r.stdout
