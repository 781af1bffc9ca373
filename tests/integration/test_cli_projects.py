"""``project create|get|update|archive`` and ``project constitution set|show`` against a
real server process."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.test_cli import assert_no_traceback, cli, server  # noqa: F401 - the fixture
from tests.process import ServerProcess


def test_project_commands(server: ServerProcess, tmp_path: Path) -> None:  # noqa: F811
    rules = tmp_path / "rules.md"
    rules.write_text("# Rules\n\nType hints everywhere.\n", encoding="utf-8")
    r = cli(
        server,
        "project",
        "create",
        "cli-p",
        "--name",
        "CLI",
        "--max-concurrent",
        "2",
        "--constitution",
        str(rules),
    )
    assert r.returncode == 0, r.stderr
    assert "max_concurrent" in r.stdout and "2 (project)" in r.stdout and "v1" in r.stdout
    again = cli(server, "project", "create", "cli-p")
    assert again.returncode != 0 and "already exists" in again.stderr
    assert_no_traceback(again)
    doc = json.loads(cli(server, "project", "get", "cli-p", "--json").stdout)
    assert doc["name"] == "CLI" and doc["settings"]["max_concurrent"] == 2
    changed = cli(
        server, "project", "update", "cli-p", "--timeout", "30", "--reset", "max_concurrent", "--json"
    )
    assert changed.returncode == 0, changed.stderr
    doc = json.loads(changed.stdout)
    assert doc["settings"]["timeout_default_seconds"] == 30 and doc["settings"]["max_concurrent"] is None
    rules.write_text("# Rules v2\n", encoding="utf-8")
    assert "constitution v2" in cli(server, "project", "constitution", "set", "cli-p", str(rules)).stdout
    assert cli(server, "project", "constitution", "show", "cli-p").stdout == "# Rules v2\n"
    first = cli(server, "project", "constitution", "show", "cli-p", "--version", "1", "--json")
    assert json.loads(first.stdout)["text"] == "# Rules\n\nType hints everywhere.\n"
    assert "archived cli-p" in cli(server, "project", "archive", "cli-p").stdout
    listed = json.loads(cli(server, "project", "ls", "--json").stdout)
    assert listed["items"] == []
    everything = json.loads(cli(server, "project", "ls", "--archived", "--json").stdout)
    assert [(p["project_id"], p["archived"]) for p in everything["items"]] == [("cli-p", True)]
    missing = cli(server, "project", "get", "nope")
    assert missing.returncode != 0 and "does not exist" in missing.stderr
    assert_no_traceback(missing)
