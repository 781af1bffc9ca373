"""Settings: YAML, flat and nested environment variables, and errors that name the setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


# -- secret settings from files (secret_files.py) ----------------------------------------------

DB_URL = "postgresql+asyncpg://orch:s3cret-pw@db.internal:5432/orch"
BROKER_URL = "amqp://orch:br0ker-pw@mq.internal:5672/"
ADMIN_KEY = "k" * 40


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_secret_settings_come_from_file_variables(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Written as `echo` or an editor would: a trailing newline, which is not part of the value.
    env.setenv("ORCH_DATABASE_URL_FILE", str(write(tmp_path / "db", DB_URL + "\n")))
    env.setenv("ORCH_BROKER_URL_FILE", str(write(tmp_path / "mq", BROKER_URL + "\r\n")))
    env.setenv("ORCH_AUTH__BOOTSTRAP_ADMIN_KEY_FILE", str(write(tmp_path / "key", ADMIN_KEY)))
    s = load_settings()
    assert s.storage.database_url == DB_URL
    assert s.events.broker_url == BROKER_URL
    assert s.auth.bootstrap_admin_key is not None
    assert s.auth.bootstrap_admin_key.get_secret_value() == ADMIN_KEY


def test_secret_settings_come_from_the_secrets_directory(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    write(secrets / "ORCH_DATABASE_URL", DB_URL + "\n")
    write(secrets / "ORCH_BROKER_URL", BROKER_URL)
    write(secrets / "ORCH_AUTH__BOOTSTRAP_ADMIN_KEY", ADMIN_KEY)
    # What a mounted Kubernetes Secret keeps beside its keys.
    (secrets / "..2026_12_06_07_00_00.000000001").mkdir()
    (secrets / "..data").symlink_to(secrets / "..2026_12_06_07_00_00.000000001")
    env.setenv("ORCH_SECRETS_DIR", str(secrets))
    s = load_settings()
    assert s.storage.database_url == DB_URL
    assert s.events.broker_url == BROKER_URL
    assert s.auth.bootstrap_admin_key is not None
    assert s.auth.bootstrap_admin_key.get_secret_value() == ADMIN_KEY


def test_secret_precedence_variables_directory_yaml(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.yaml", "storage:\n  database_url: postgresql://from-yaml@h/db\n")
    env.setenv("ORCH_CONFIG", str(cfg))
    assert load_settings().storage.database_url.endswith("from-yaml@h/db")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    write(secrets / "ORCH_DATABASE_URL", "postgresql://from-dir@h/db")
    env.setenv("ORCH_SECRETS_DIR", str(secrets))
    assert load_settings().storage.database_url.endswith("from-dir@h/db"), "the directory beats YAML"
    env.setenv("ORCH_STORAGE__DATABASE_URL", "postgresql://from-nested@h/db")
    assert load_settings().storage.database_url.endswith("from-nested@h/db"), "a variable beats the dir"
    env.setenv("ORCH_DATABASE_URL_FILE", str(write(tmp_path / "db", "postgresql://from-file@h/db")))
    assert load_settings().storage.database_url.endswith("from-file@h/db"), "_FILE is as strong as flat"
    env.delenv("ORCH_DATABASE_URL_FILE")
    env.setenv("ORCH_DATABASE_URL", "postgresql://from-flat@h/db")
    assert load_settings().storage.database_url.endswith("from-flat@h/db")
    # Explicit arguments beat every file.
    assert load_settings(storage={"database_url": "postgresql://arg@h/db"}).storage.database_url.endswith(
        "arg@h/db"
    )


def test_a_variable_and_its_file_variable_together_are_refused(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env.setenv("ORCH_BROKER_URL", BROKER_URL)
    env.setenv("ORCH_BROKER_URL_FILE", str(write(tmp_path / "mq", BROKER_URL)))
    with pytest.raises(SettingsError, match="ORCH_BROKER_URL and ORCH_BROKER_URL_FILE are both set"):
        load_settings()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "absent", "ORCH_DATABASE_URL_FILE: file not found: {path}"),
        (lambda d: write(d / "blank", " \n"), "ORCH_DATABASE_URL_FILE: {path} is empty"),
        (lambda d: d, "ORCH_DATABASE_URL_FILE: {path} is a directory, not a file"),
        (lambda d: (d / "bin").write_bytes(b"\xff\xfe\x00") and d / "bin", "{path} is not UTF-8 text"),
    ],
    ids=["missing", "empty", "directory", "not-text"],
)
def test_an_unusable_secret_file_stops_the_start_naming_it(
    env: pytest.MonkeyPatch, tmp_path: Path, make: Any, message: str
) -> None:
    path = make(tmp_path)
    env.setenv("ORCH_DATABASE_URL_FILE", str(path))
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert message.format(path=path) in str(info.value)


def test_an_empty_file_variable_is_refused(env: pytest.MonkeyPatch) -> None:
    env.setenv("ORCH_DATABASE_URL_FILE", "")
    with pytest.raises(SettingsError, match="ORCH_DATABASE_URL_FILE is set but empty"):
        load_settings()


def test_secrets_directory_errors(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("ORCH_SECRETS_DIR", str(tmp_path / "absent"))
    with pytest.raises(SettingsError, match="ORCH_SECRETS_DIR: not a directory"):
        load_settings()
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    write(secrets / "ORCH_DATABSE_URL", DB_URL)  # a typo must not pass unnoticed
    env.setenv("ORCH_SECRETS_DIR", str(secrets))
    with pytest.raises(SettingsError, match="ORCH_DATABSE_URL names no secret setting") as info:
        load_settings()
    assert "ORCH_DATABASE_URL" in str(info.value), "the message lists the names expected"


def test_errors_about_a_secret_file_never_show_its_contents(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("ORCH_DATABASE_URL_FILE", str(write(tmp_path / "db", "mysql://orch:hunter2@db/x")))
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "storage.database_url (ORCH_DATABASE_URL)" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_every_secret_field_can_come_from_a_file() -> None:
    """A new SecretStr setting must join SECRET_SETTINGS (and so get its _FILE variable)."""
    from pydantic import BaseModel, SecretStr

    from orchestration_service.config import Settings
    from orchestration_service.secret_files import SECRET_SETTINGS

    secret_fields = set()
    for section, info in Settings.model_fields.items():
        model = info.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        for name, field in model.model_fields.items():
            if SecretStr in (field.annotation, *getattr(field.annotation, "__args__", ())):
                secret_fields.add((section, name))
    assert secret_fields, "auth.bootstrap_admin_key at least"
    assert secret_fields <= set(SECRET_SETTINGS.values())
    for section, name in SECRET_SETTINGS.values():
        assert name in Settings.model_fields[section].annotation.model_fields, (section, name)  # type: ignore[union-attr]
