"""The client options through the real command line, no server: which URL a command used
shows in its "cannot reach" line (nothing listens on the ports used here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestration_service.cli import app
from tests.process import BIN, free_port


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str | None]:
    # None of the caller's ORCH_* variables; an empty configuration directory.
    return {**{k: None for k in os.environ if k.startswith("ORCH_")}, "XDG_CONFIG_HOME": str(tmp_path)}


def run(env: dict[str, str | None], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output


def unreachable() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_the_root_flag_the_command_flag_and_the_environment(env: dict[str, str | None]) -> None:
    root, own, from_env = unreachable(), unreachable(), unreachable()
    code, text = run({**env, "ORCH_URL": from_env}, "task", "ls")
    assert code == 1 and f"cannot reach the service at {from_env}" in text
    code, text = run({**env, "ORCH_URL": from_env}, "--url", root, "task", "ls")
    assert f"cannot reach the service at {root}" in text
    code, text = run({**env, "ORCH_URL": from_env}, "--url", root, "task", "ls", "--url", own)
    assert f"cannot reach the service at {own}" in text


def test_a_profile_given_after_the_command(env: dict[str, str | None], tmp_path: Path) -> None:
    url = unreachable()
    (tmp_path / "orchestration-service").mkdir()
    (tmp_path / "orchestration-service" / "config.toml").write_text(f'[profiles.p]\nurl = "{url}"\n')
    code, text = run(env, "task", "get", "x", "--profile", "p")
    assert code == 1 and f"cannot reach the service at {url}" in text
    code, text = run({**env, "ORCH_PROFILE": "p"}, "project", "ls")
    assert f"cannot reach the service at {url}" in text


def test_usage_errors_exit_2_in_one_line(env: dict[str, str | None]) -> None:
    code, text = run(env, "--profile", "nope", "task", "ls")
    assert code == 2 and text.count("\n") == 1 and "unknown profile 'nope'" in text
    code, text = run(env, "task", "ls", "--json", "-o", "yaml")
    assert code == 2 and "give --json or --output yaml, not both" in text
    code, text = run({**env, "ORCH_OUTPUT": "xml"}, "task", "ls")
    assert code == 2 and "unknown output 'xml'" in text
    code, text = run(env, "task", "ls", "--since", "yesterday")
    assert code == 2 and "give a time" in text
    code, text = run(env, "task", "submit", "no project", "--url", unreachable())
    assert code == 2 and "give --project" in text


def test_client_commands_never_read_the_servers_configuration(env: dict[str, str | None]) -> None:
    """A server setting that does not load (or a configuration file that does not exist) is
    no business of a client command."""
    url = unreachable()
    broken = {**env, "ORCH_CONFIG": "/nonexistent/orch.yaml", "ORCH_WORKERS": "many"}
    code, text = run(broken, "task", "ls", "--url", url)
    assert code == 1 and f"cannot reach the service at {url}" in text


def test_completion_scripts_and_completions() -> None:
    env = {"PATH": str(Path(sys.executable).parent), "HOME": "/tmp"}
    shown = subprocess.run(
        [str(BIN), "--show-completion", "bash"],
        env={**env, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert "_ORCHESTRATION_SERVICE_COMPLETE=complete_bash" in shown.stdout
    # What bash asks when one presses tab after "task l" and "task ls --pri".
    for words, expected in (
        ("orchestration-service task l", "ls"),
        ("orchestration-service task ls --pri", "--priority"),
    ):
        completed = subprocess.run(
            [str(BIN)],
            env={
                **env,
                "_ORCHESTRATION_SERVICE_COMPLETE": "complete_bash",
                "COMP_WORDS": words,
                "COMP_CWORD": str(len(words.split()) - 1),
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert expected in completed.stdout.split(), completed.stdout
