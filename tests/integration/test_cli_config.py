"""The CLI's habits against a real server process (SQLite and PostgreSQL): profiles with a
key file, the output formats, every filter of ``task ls`` and its paging, ``events post``,
and ``--wait --timeout`` on a stream that keeps sending keep-alives."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.test_cli import assert_no_traceback, sse_listeners
from tests.integration.test_event_lifecycle import cloud_event
from tests.process import BIN, ServerProcess
from tests.waiting import eventually_sync

ADMIN_KEY = "habits-" + "k" * 40


def run(
    env: dict[str, str], *args: str, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    base = {"PATH": str(Path(sys.executable).parent), "HOME": "/nonexistent", "COLUMNS": "200"}
    r = subprocess.run(
        [str(BIN), *args], env={**base, **env}, input=stdin, capture_output=True, text=True, timeout=timeout
    )
    assert_no_traceback(r)
    return r


@pytest.fixture
def server(clean_db: str, tmp_path: Path) -> Iterator[ServerProcess]:
    # Keep-alives every 0.2 s: a stream is never quiet long enough for a read timeout.
    env = {"ORCH_DATABASE_URL": clean_db, "ORCH_EVENTS__SSE_HEARTBEAT_SECONDS": "0.2"}
    with ServerProcess(env, log_path=tmp_path / "server.log").start() as s:
        yield s


@pytest.fixture
def config_home(tmp_path: Path) -> Path:
    home = tmp_path / "xdg"
    (home / "orchestration-service").mkdir(parents=True)
    return home


def write_config(home: Path, text: str) -> None:
    (home / "orchestration-service" / "config.toml").write_text(text)


def jsonl(r: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_a_profile_gives_the_url_the_key_file_the_project_and_the_output(
    clean_db: str, tmp_path: Path, config_home: Path
) -> None:
    key = config_home / "orchestration-service" / "ci.key"
    key.write_text(ADMIN_KEY + "\n")
    key.chmod(0o600)
    env = {
        "ORCH_DATABASE_URL": clean_db,
        "ORCH_AUTH_ENABLED": "true",
        "ORCH_AUTH__BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
    }
    with ServerProcess(env, log_path=tmp_path / "server.log").start() as server:
        write_config(
            config_home,
            f'[profiles.ci]\nurl = "{server.url}"\napi_key_file = "ci.key"\n'
            'project = "habits"\noutput = "jsonl"\n',
        )
        xdg = {"XDG_CONFIG_HOME": str(config_home)}
        # The profile's project and output: the task document on one line.
        submitted = jsonl(run(xdg, "--profile", "ci", "task", "submit", "Profiled"))
        assert len(submitted) == 1 and submitted[0]["project_id"] == "habits"
        assert run(xdg, "--profile", "ci", "task", "submit", "Elsewhere", "-p", "other").returncode == 0
        # ORCH_PROFILE, a list as lines; the flag after the command beats the profile's output.
        listed = jsonl(run({**xdg, "ORCH_PROFILE": "ci"}, "task", "ls", "-p", "habits"))
        assert [t["task_id"] for t in listed] == [submitted[0]["task_id"]]
        page = yaml.safe_load(run({**xdg, "ORCH_PROFILE": "ci"}, "task", "ls", "-o", "yaml").stdout)
        assert page["total"] == 2
        # The environment beats the profile: a wrong key there is refused.
        refused = run({**xdg, "ORCH_PROFILE": "ci", "ORCH_API_KEY": "orch_wrong" + "x" * 30}, "task", "ls")
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1
        # Without the profile: no key, refused; with --api-key-file: accepted.
        assert run({"ORCH_URL": server.url}, "task", "ls").returncode == 1
        keyed = run({"ORCH_URL": server.url}, "--api-key-file", str(key), "--json", "task", "ls")
        assert keyed.returncode == 2  # --json is an option of the commands, not of the root
        keyed = run({"ORCH_URL": server.url}, "--api-key-file", str(key), "-o", "json", "task", "ls")
        assert keyed.returncode == 0 and json.loads(keyed.stdout)["total"] == 2


def submit(server: ServerProcess, project: str, description: str, priority: str) -> str:
    r = run({"ORCH_URL": server.url}, "task", "submit", description, "-p", project, "--priority", priority)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_task_ls_filters_and_paging(server: ServerProcess) -> None:
    env = {"ORCH_URL": server.url}
    low = submit(server, "f", "first", "low")
    high = [submit(server, "f", f"high {i}", "high") for i in range(2)]
    submit(server, "g", "other project", "high")

    def ids(*args: str) -> list[str]:
        return [t["task_id"] for t in jsonl(run(env, "task", "ls", "-o", "jsonl", *args))]

    assert sorted(ids("-p", "f", "--priority", "high")) == sorted(high)
    assert len(ids("--priority", "high")) == 3
    assert len(ids("-p", "f", "--since", "1h")) == 3
    assert ids("-p", "f", "--until", "1h") == []
    future = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")  # no offset: UTC
    assert ids("-p", "f", "--created-after", future) == []
    assert len(ids("-p", "f", "--created-before", future)) == 3
    # Paging: one at a time by cursor, or every page with --all.
    first = json.loads(run(env, "task", "ls", "-p", "f", "--limit", "1", "--json").stdout)
    assert len(first["items"]) == 1 and first["next_cursor"]
    second = ids("-p", "f", "--limit", "1", "--cursor", first["next_cursor"])
    assert len(second) == 1 and second[0] != first["items"][0]["task_id"]
    assert ids("-p", "f", "--limit", "1", "--offset", "2") == [low]  # newest first
    every = ids("-p", "f", "--limit", "1", "--all")
    assert sorted(every) == sorted([low, *high])
    whole = json.loads(run(env, "task", "ls", "-p", "f", "--limit", "2", "--all", "-o", "json").stdout)
    assert sorted(t["task_id"] for t in whole["items"]) == sorted(every) and whole["total"] == 3
    table = run(env, "task", "ls", "-p", "f", "--limit", "1")
    assert "1 of 3" in table.stdout and "more: --cursor" in table.stdout
    bad = run(env, "task", "ls", "--priority", "urgent")
    assert bad.returncode == 2


def test_every_format_of_a_command_that_prints_a_document(server: ServerProcess) -> None:
    env = {"ORCH_URL": server.url}
    task_id = submit(server, "fmt", "formatted", "normal")
    as_json = json.loads(run(env, "task", "get", task_id, "--json").stdout)
    assert json.loads(run(env, "-o", "json", "task", "get", task_id).stdout) == as_json
    assert json.loads(run({**env, "ORCH_OUTPUT": "jsonl"}, "task", "get", task_id).stdout) == as_json
    assert yaml.safe_load(run(env, "task", "get", task_id, "-o", "yaml").stdout)["task_id"] == task_id
    assert task_id in run(env, "-o", "json", "task", "get", task_id, "-o", "table").stdout.split()
    history = jsonl(run(env, "task", "history", task_id, "-o", "jsonl"))
    assert history[0]["to"] == "pending"
    status = yaml.safe_load(run(env, "project", "status", "fmt", "-o", "yaml").stdout)
    assert status["project_id"] == "fmt"


def test_wait_timeout_fires_on_a_stream_of_keep_alives(server: ServerProcess) -> None:
    """Keep-alives every 0.2 s never let the read timeout fire, so the deadline itself must be
    checked on them (the client library did not: --timeout 1 waited forever)."""
    r = run(
        {"ORCH_URL": server.url},
        "task",
        "submit",
        "Nobody takes it",
        "-p",
        "ka",
        "--wait",
        "--timeout",
        "1",
        timeout=30,
    )
    assert r.returncode == 4, r.stderr
    assert "after 1s" in r.stderr
    eventually_sync(lambda: sse_listeners(server) == 0, what="the timed-out stream to close")


def test_events_post_from_a_file_and_from_stdin(server: ServerProcess, tmp_path: Path) -> None:
    env = {"ORCH_URL": server.url}
    task_id = submit(server, "post", "to be reported on", "normal")
    eventually_sync(
        lambda: json.loads(run(env, "task", "get", task_id, "--json").stdout)["status"] == "running",
        what="the task to be dispatched",
    )
    progress = cloud_event("task.progress", {"task_id": task_id, "progress": 0.5, "message": "halfway"})
    file = tmp_path / "event.json"
    file.write_text(json.dumps(progress))
    posted = run(env, "events", "post", str(file), "--json")
    assert posted.returncode == 0, posted.stderr
    assert json.loads(posted.stdout)["outcome"] == "processed"
    doc = json.loads(run(env, "task", "get", task_id, "--json").stdout)
    assert doc["progress"]["message"] == "halfway"
    # stdin, for people: the outcome on one line.
    later = {**progress, "id": str(uuid.uuid4()), "time": "2026-11-24T10:00:01Z"}  # older reports lose
    people = run(env, "events", "post", "-", stdin=json.dumps(later))
    assert people.returncode == 0 and people.stdout.startswith("processed")
    # A refused event: exit 1, the problem in one line.
    unknown = cloud_event("task.output.created", {"task_id": str(uuid.uuid4()), "worker_id": "w"})
    refused = run(env, "events", "post", "-", stdin=json.dumps(unknown))
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    # A batch: answered per event; exit 1 when any was refused; -o jsonl, a line per result.
    batch = [{**progress, "id": str(uuid.uuid4()), "time": "2026-11-24T10:00:02Z"}, unknown]
    results = run(env, "events", "post", "-", "-o", "jsonl", stdin=json.dumps(batch))
    assert results.returncode == 1
    assert [r["outcome"] for r in map(json.loads, results.stdout.splitlines())] == ["processed", "rejected"]
    # Not JSON, or not an event: a usage error.
    broken = run(env, "events", "post", "-", stdin="{not json")
    assert broken.returncode == 2 and "stdin is not JSON" in broken.stderr
    assert run(env, "events", "post", "-", stdin="[]").returncode == 2
    assert run(env, "events", "post", str(tmp_path / "missing.json")).returncode == 2


def test_streams_in_every_format(server: ServerProcess) -> None:
    env = {"ORCH_URL": server.url}
    task_id = submit(server, "streams", "streamed", "normal")
    tail = run(env, "events", "tail", "--after", "0", "--limit", "2", "--subject", task_id, "-o", "yaml")
    docs = list(yaml.safe_load_all(tail.stdout))
    assert len(docs) == 2 and all(d["cloudevent"]["subject"] == task_id for d in docs)
    assert run(env, "task", "cancel", task_id).returncode == 0
    r = run(env, "task", "watch", task_id, "-o", "jsonl")
    assert r.returncode == 3  # cancelled
    watched = [json.loads(line) for line in r.stdout.splitlines()]
    assert watched[0]["event"] == "snapshot" and watched[0]["data"]["status"] == "cancelled"
    assert "cancelled" in run(env, "task", "watch", task_id).stdout


def test_no_server_configuration_is_read(server: ServerProcess, tmp_path: Path) -> None:
    broken = {
        "ORCH_URL": server.url,
        "ORCH_CONFIG": str(tmp_path / "missing.yaml"),
        "ORCH_PORT": "not a port",
    }
    r = run(broken, "task", "ls", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["total"] == 0
