"""``review`` commands end to end against a real server process: the queue, a review, each
decision, and a second decision's one-line error (exit 1, no traceback)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_cli import assert_no_traceback, cli
from tests.process import ServerProcess
from tests.waiting import eventually_sync

CE = {"content-type": "application/cloudevents+json"}


@pytest.fixture
def server(clean_db: str, tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess({"ORCH_DATABASE_URL": clean_db}, log_path=tmp_path / "server.log").start() as s:
        yield s


def _event(name: str, data: dict[str, Any], source: str) -> bytes:
    env = {"specversion": "1.0", "type": f"dats.{name}", "source": source, "id": str(uuid.uuid4())}
    return json.dumps({**env, "subject": data["task_id"], "data": data}).encode()


def _status(http: httpx.Client, task_id: str, status: str) -> None:
    eventually_sync(
        lambda: http.get(f"/api/v1/tasks/{task_id}").json()["status"] == status, what=f"{task_id} {status}"
    )


def to_review(http: httpx.Client, project: str = "cli-review") -> str:
    r = http.post("/api/v1/tasks", json={"description": "Write a fibonacci function", "project_id": project})
    tid = str(r.json()["task_id"])
    _status(http, tid, "running")
    output = {
        "task_id": tid,
        "artifacts": [{"id": "art-1", "type": "code", "path": "fib.py"}],
        "output": {"content": "def fib(n):\n    return n"},
    }
    assert http.post(
        "/api/v1/events", content=_event("task.output.created", output, "/worker"), headers=CE
    ).is_success
    asked = {"task_id": tid, "reason": "confidence 0.4", "checklist": ["n = 0"]}
    assert http.post(
        "/api/v1/events", content=_event("review.requested", asked, "/qa-service"), headers=CE
    ).is_success
    _status(http, tid, "awaiting_review")
    return tid


def test_review_commands(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        first, second = to_review(http), to_review(http)

        listing = json.loads(cli(server, "review", "ls", "--json").stdout)
        assert [i["task_id"] for i in listing["items"]] == [first, second]  # oldest first
        rid = listing["items"][0]["review_id"]
        table = cli(server, "review", "ls", "--project", "cli-review")
        assert table.returncode == 0 and rid in table.stdout and "2 of 2" in table.stdout

        shown = cli(server, "review", "show", rid)
        assert shown.returncode == 0, shown.stderr
        assert "confidence 0.4" in shown.stdout and "def fib(n):" in shown.stdout and "art-1" in shown.stdout

        changes = cli(server, "review", "request-changes", rid, "--feedback", "handle n < 0")
        assert changes.returncode == 0, changes.stderr
        assert f"{rid} changes_requested by anonymous; task {first} is running" in changes.stdout
        again = cli(server, "review", "approve", rid, "--comment", "late")
        assert again.returncode == 1 and again.stdout == ""
        assert again.stderr.count("\n") == 1 and "already decided" in again.stderr
        assert_no_traceback(again)

        other = json.loads(cli(server, "review", "ls", "--json").stdout)["items"][0]["review_id"]
        approved = json.loads(cli(server, "review", "approve", other, "--comment", "fine", "--json").stdout)
        assert approved["decision"] == "approved" and approved["decision_text"] == "fine"
        assert approved["task"]["status"] == "completed"
        decided = json.loads(cli(server, "review", "ls", "--status", "decided", "--json").stdout)
        assert [i["decision"] for i in decided["items"]] == ["changes_requested", "approved"]

        third = to_review(http)
        rid3 = json.loads(cli(server, "review", "ls", "--json").stdout)["items"][0]["review_id"]
        missing_reason = cli(server, "review", "reject", rid3)
        assert missing_reason.returncode == 2  # usage: --reason is required
        rejected = cli(server, "review", "reject", rid3, "--reason", "wrong")
        assert rejected.returncode == 0 and f"task {third} is failed" in rejected.stdout
        unknown = cli(server, "review", "show", str(uuid.uuid4()))
        assert unknown.returncode == 1 and "does not exist" in unknown.stderr
        assert_no_traceback(unknown)
