"""``task tree ID`` against a real server process whose Agent Service (the fake, a real HTTP
server) plans a three-level tree."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.fake_services import FakeService
from tests.integration.test_cli import assert_no_traceback, cli
from tests.integration.test_task_tree import NAMES, ROOT, tree_agent
from tests.process import ServerProcess
from tests.waiting import eventually_sync


@pytest.fixture
def agent() -> Iterator[FakeService]:
    fake = FakeService("agent")
    fake.start()
    tree_agent(fake)
    yield fake
    fake.stop()


@pytest.fixture
def server(clean_db: str, agent: FakeService, tmp_path: Path) -> Iterator[ServerProcess]:
    env = {
        "ORCH_DATABASE_URL": clean_db,
        "ORCH_ROUTING__AGENT_SERVICE_URL": agent.url,
        "ORCH_ROUTING__AGENT_TIMEOUT_SECONDS": "5",
    }
    with ServerProcess(env, log_path=tmp_path / "server.log").start() as s:
        yield s


def test_task_tree_draws_every_level(server: ServerProcess) -> None:
    r = cli(server, "task", "submit", ROOT, "--project", "cli", "--decompose")
    assert r.returncode == 0, r.stderr
    root = r.stdout.strip()

    def planned() -> dict[str, Any] | None:
        doc = httpx.get(f"{server.url}/api/v1/tasks/{root}/tree", timeout=5).json()
        return dict(doc) if doc["subtask_count"] == 7 else None

    tree = eventually_sync(planned, timeout=20, what="the tree planned")
    as_json = cli(server, "task", "tree", root, "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["children"][0]["task_id"] == tree["children"][0]["task_id"]

    drawn = cli(server, "task", "tree", root)
    assert drawn.returncode == 0, drawn.stderr
    lines = drawn.stdout.splitlines()
    assert ROOT in lines[0] and root in lines[0]
    # One line per subtask, indented by level under its parent, in the plan's order.
    # (A label is "status description  id"; "after …" names a sibling at the end.)
    rows = {NAMES[d]: i for i, line in enumerate(lines) for d in NAMES if f"{d}  " in line}
    assert rows["api"] < rows["schema"] < rows["handlers"] < rows["ui"] < rows["components"]
    assert rows["components"] < rows["pages"] < rows["docs"]

    def indent(name: str) -> int:
        line = lines[rows[name]]
        return len(line) - len(line.lstrip(" │├└─"))  # the tree's guides before the label

    assert indent("api") == indent("ui") == indent("docs") < indent("schema") == indent("pages")
    assert "after Build the notes API" in lines[rows["ui"]]
    assert lines[-1].strip() == "7 subtasks"

    missing = cli(server, "task", "tree", "00000000-0000-0000-0000-000000000000")
    assert missing.returncode == 1
    assert missing.stderr.strip().startswith("orchestration-service: Resource not found")
    assert_no_traceback(missing)
