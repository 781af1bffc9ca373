"""Settings: YAML, flat and nested environment variables, and errors that name the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestration_service.config import SettingsError, load_settings


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    monkeypatch.setenv("ORCH_CONFIG", str(tmp_path / "none.yaml"))
    (tmp_path / "none.yaml").write_text("{}\n")
    return monkeypatch


def test_defaults_are_embedded_and_loopback(env: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert s.storage.database_url.startswith("sqlite+aiosqlite:///")
    assert s.events.broker_url == "memory://"
    assert s.server.host == "127.0.0.1" and s.server.port == 8000
    # Above httpx's 5 s idle limit: a client never reuses a connection being closed.
    assert s.server.keep_alive_seconds > 5
    assert s.redis.host == "127.0.0.1"
    assert s.routing.agent_service_url is None
    assert s.task_management.max_concurrent_per_project == 10
    assert s.task_management.timeout_default_seconds == 600


def test_flat_variables_override_yaml(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("task_management:\n  max_concurrent_per_project: 3\nserver:\n  port: 9001\n")
    env.setenv("ORCH_CONFIG", str(cfg))
    assert load_settings().task_management.max_concurrent_per_project == 3
    env.setenv("ORCH_MAX_CONCURRENT_PER_PROJECT", "7")
    env.setenv("ORCH_DATABASE_URL", "postgresql://postgres@127.0.0.1/db")
    env.setenv("ORCH_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
    env.setenv("ORCH_AGENT_SERVICE_URL", "http://127.0.0.1:9000/api/v1/")
    env.setenv("ORCH_RAG_SERVICE_URL", "http://127.0.0.1:9100/api/v1")
    env.setenv("ORCH_AGENT_TIMEOUT_SECONDS", "2.5")
    env.setenv("ORCH_HOST", "127.0.0.2")
    env.setenv("ORCH_PORT", "8123")
    s = load_settings()
    assert s.task_management.max_concurrent_per_project == 7
    assert s.storage.database_url == "postgresql+asyncpg://postgres@127.0.0.1/db"
    assert s.events.broker_url.startswith("amqp://")
    assert s.routing.agent_service_url == "http://127.0.0.1:9000/api/v1"
    assert s.routing.rag_service_url == "http://127.0.0.1:9100/api/v1"
    assert s.routing.agent_timeout_seconds == 2.5
    assert (s.server.host, s.server.port) == ("127.0.0.2", 8123)


def test_nested_variables_reach_every_field(env: pytest.MonkeyPatch) -> None:
    env.setenv("ORCH_TASK_MANAGEMENT__MAX_ATTEMPTS_DEFAULT", "5")
    assert load_settings().task_management.max_attempts_default == 5


@pytest.mark.parametrize(
    ("var", "value", "named"),
    [
        ("ORCH_PORT", "eighty", "server.port (ORCH_PORT)"),
        ("ORCH_DATABASE_URL", "mysql://x", "storage.database_url (ORCH_DATABASE_URL)"),
        ("ORCH_BROKER_URL", "kafka://x", "events.broker_url (ORCH_BROKER_URL)"),
        ("ORCH_MAX_CONCURRENT_PER_PROJECT", "0", "task_management.max_concurrent_per_project"),
        ("ORCH_AGENT_SERVICE_URL", "ftp://x", "routing.agent_service_url (ORCH_AGENT_SERVICE_URL)"),
        (
            "ORCH_TASK_MANAGEMENT__TIMEOUT_DEFAULT_SECONDS",
            "-1",
            "ORCH_TASK_MANAGEMENT__TIMEOUT_DEFAULT_SECONDS",
        ),
        ("ORCH_SERVER__KEEP_ALIVE_SECONDS", "0", "ORCH_SERVER__KEEP_ALIVE_SECONDS"),
    ],
)
def test_bad_values_name_the_setting(env: pytest.MonkeyPatch, var: str, value: str, named: str) -> None:
    env.setenv(var, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert named in str(info.value)


def test_bad_yaml_and_missing_file_are_clear(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("ORCH_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(SettingsError, match="file not found"):
        load_settings()
    bad = tmp_path / "bad.yaml"
    bad.write_text("storage: [unclosed\n")
    env.setenv("ORCH_CONFIG", str(bad))
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_settings()
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("storage:\n  databse_url: x\n")
    env.setenv("ORCH_CONFIG", str(unknown))
    with pytest.raises(SettingsError, match=r"storage\.databse_url"):
        load_settings()


def test_shipped_config_file_loads(env: pytest.MonkeyPatch) -> None:
    env.setenv("ORCH_CONFIG", "config/orchestration-service.yaml")
    s = load_settings()
    assert s.routing.rules_file == "config/routing-rules.yaml"
    assert "192.168" not in s.model_dump_json()
