"""``orchestration-service fleet …`` against a real server process (both databases)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.integration.test_cli import assert_no_traceback, cli
from tests.integration.test_event_lifecycle import cloud_event, output_event
from tests.process import ServerProcess
from tests.waiting import eventually_sync

CE = {"content-type": "application/cloudevents+json"}


@pytest.fixture
def server(clean_db: str, tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess({"ORCH_DATABASE_URL": clean_db}, log_path=tmp_path / "server.log").start() as s:
        yield s


def test_fleet_commands(server: ServerProcess) -> None:
    task_id = cli(server, "task", "submit", "Write a fibonacci function", "--project", "fleet").stdout.strip()
    eventually_sync(
        lambda: httpx.get(f"{server.url}/api/v1/tasks/{task_id}").json()["status"] == "running",
        what="the task running",
    )
    post = httpx.post(f"{server.url}/api/v1/events", content=orjson.dumps(output_event(task_id)), headers=CE)
    assert post.status_code == 202, post.text
    poison = cloud_event("task.output.created", {"task_id": task_id})  # no artifacts
    assert (
        httpx.post(f"{server.url}/api/v1/events", content=orjson.dumps(poison), headers=CE).status_code == 422
    )
    failed_id = cli(server, "task", "submit", "Write a parser", "--project", "fleet").stdout.strip()
    eventually_sync(
        lambda: httpx.get(f"{server.url}/api/v1/tasks/{failed_id}").json()["status"] == "running",
        what="the second task running",
    )
    fail = cloud_event("task.failed", {"task_id": failed_id, "error": "oom", "worker_id": "worker-8"})
    assert (
        httpx.post(f"{server.url}/api/v1/events", content=orjson.dumps(fail), headers=CE).status_code == 202
    )

    workers = cli(server, "fleet", "workers", "--json")
    assert workers.returncode == 0, workers.stderr
    by_id = {w["worker_id"]: w for w in json.loads(workers.stdout)["items"]}
    assert by_id["worker-7"]["in_flight"] == 1 and by_id["worker-8"]["failed"] == 1
    table = cli(server, "fleet", "workers")
    assert "worker-7" in table.stdout and "gemma3:12b" in table.stdout

    queues = json.loads(cli(server, "fleet", "queues", "--json").stdout)
    tiny = next(q for q in queues["items"] if q["tier"] == "tiny")
    assert tiny["validating"] == 1 and queues["broker"]["source"] == "not-applicable"
    assert "not-applicable" in cli(server, "fleet", "queues").stdout

    failures = json.loads(cli(server, "fleet", "failures", "--project", "fleet", "--json").stdout)
    assert [f["task_id"] for f in failures["items"]] == [failed_id]
    assert failed_id in cli(server, "fleet", "failures", "--reason", "worker").stdout
    assert json.loads(cli(server, "fleet", "failures", "--reason", "timeout", "--json").stdout)["items"] == []

    letters = json.loads(cli(server, "fleet", "dead-letters", "--json").stdout)["items"]
    assert [(d["source"], d["kind"]) for d in letters] == [("ingress", "schema")]
    letter = letters[0]["id"]
    assert letter in cli(server, "fleet", "dead-letters").stdout
    shown = json.loads(cli(server, "fleet", "dead-letters", "show", letter).stdout)
    assert orjson.loads(shown["payload"])["id"] == poison["id"]
    replayed = cli(server, "fleet", "dead-letters", "replay", letter)
    assert replayed.returncode == 1 and "dead_lettered" in replayed.stdout, replayed.stderr
    gone = cli(server, "fleet", "dead-letters", "discard", letter, "--yes")
    assert gone.returncode == 0, gone.stderr
    again = cli(server, "fleet", "dead-letters", "replay", letter)
    assert again.returncode == 1 and again.stderr.count("\n") == 1 and "does not exist" in again.stderr
    assert_no_traceback(again)
