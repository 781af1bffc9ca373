"""Typed settings.

Sources, strongest first: explicit arguments, the flat ``ORCH_*`` variables
(``ORCH_DATABASE_URL`` …; docs/operating/configuration.md lists them) and the secret
settings' ``<VARIABLE>_FILE`` variables, nested variables
(``ORCH_TASK_MANAGEMENT__MAX_ATTEMPTS_DEFAULT``), the files of ``ORCH_SECRETS_DIR``
(``secret_files``), the YAML file (``ORCH_CONFIG``, else ``config/orchestration-service.yaml``
when present), then the defaults below. Every default is a loopback address or an embedded component, so
the service starts with no other server.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from orchestration_service.config.sections import (  # re-exported: `config.StorageSettings` …
    AuthSettings as AuthSettings,
)
from orchestration_service.config.sections import (
    EventsSettings as EventsSettings,
)
from orchestration_service.config.sections import (
    FleetSettings as FleetSettings,
)
from orchestration_service.config.sections import (
    LoggingSettings as LoggingSettings,
)
from orchestration_service.config.sections import (
    ObservabilitySettings as ObservabilitySettings,
)
from orchestration_service.config.sections import (
    ProjectsSettings as ProjectsSettings,
)
from orchestration_service.config.sections import (
    RabbitMQSettings as RabbitMQSettings,
)
from orchestration_service.config.sections import (
    RedisSettings as RedisSettings,
)
from orchestration_service.config.sections import (
    RoutingSettings as RoutingSettings,
)
from orchestration_service.config.sections import (
    ServerSettings as ServerSettings,
)
from orchestration_service.config.sections import (
    StorageSettings as StorageSettings,
)
from orchestration_service.config.sections import (
    TaskManagementSettings as TaskManagementSettings,
)
from orchestration_service.redaction import redact
from orchestration_service.secret_files import (
    SecretFileError,
    SecretsDirSource,
    WithoutFileVariables,
    secret_variable_values,
)

DEFAULT_CONFIG_PATH = Path("config/orchestration-service.yaml")

# Flat variables -> (section, field). These are the names people type; nested
# ``ORCH_SECTION__FIELD`` variables reach every other field.
FLAT_ENV: dict[str, tuple[str, str]] = {
    "ORCH_DATABASE_URL": ("storage", "database_url"),
    "ORCH_BROKER_URL": ("events", "broker_url"),
    "ORCH_AGENT_SERVICE_URL": ("routing", "agent_service_url"),
    "ORCH_RAG_SERVICE_URL": ("routing", "rag_service_url"),
    "ORCH_AGENT_TIMEOUT_SECONDS": ("routing", "agent_timeout_seconds"),
    "ORCH_MAX_CONCURRENT_PER_PROJECT": ("task_management", "max_concurrent_per_project"),
    "ORCH_HOST": ("server", "host"),
    "ORCH_PORT": ("server", "port"),
    "ORCH_WORKERS": ("server", "workers"),
    "ORCH_MAX_BODY_BYTES": ("server", "max_body_bytes"),
    "ORCH_SHUTDOWN_GRACE_SECONDS": ("server", "shutdown_grace_seconds"),
    "ORCH_EVENT_RETENTION_DAYS": ("events", "retention_days"),
    "ORCH_LOG_LEVEL": ("logging", "level"),
    "ORCH_AUTH_ENABLED": ("auth", "enabled"),
    "ORCH_AUTH_ALLOW_INSECURE": ("auth", "allow_insecure"),
    "ORCH_METRICS_ENABLED": ("observability", "metrics_enabled"),
    "ORCH_OTEL_EXPORTER": ("observability", "otel_exporter"),
    "ORCH_LOG_FORMAT": ("logging", "format"),
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ORCH_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    task_management: TaskManagementSettings = Field(default_factory=TaskManagementSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    events: EventsSettings = Field(default_factory=EventsSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    fleet: FleetSettings = Field(default_factory=FleetSettings)
    projects: ProjectsSettings = Field(default_factory=ProjectsSettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            _FlatEnvSource(settings_cls),
            WithoutFileVariables(settings_cls, env_settings),
            SecretsDirSource(settings_cls),
            _YamlSource(settings_cls),
        )


class _FlatEnvSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        out: dict[str, dict[str, Any]] = {}
        for var, (section, name) in FLAT_ENV.items():
            value = os.environ.get(var)
            if value is not None:
                out.setdefault(section, {})[name] = value
        for section, values in secret_variable_values().items():
            out.setdefault(section, {}).update(values)
        return out


class _YamlSource(PydanticBaseSettingsSource):
    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path_str = os.environ.get("ORCH_CONFIG")
        path = Path(path_str) if path_str else DEFAULT_CONFIG_PATH
        if not path.exists():
            if path_str:
                raise SettingsError(f"ORCH_CONFIG: file not found: {path}")
            return {}
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise SettingsError(f"ORCH_CONFIG: {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise SettingsError(f"ORCH_CONFIG: {path} must hold a mapping of sections")
        return data


class SettingsError(Exception):
    """Start-up configuration problem; the message names the setting."""


def _env_name(loc: tuple[int | str, ...]) -> str:
    dotted = ".".join(str(p) for p in loc)
    for var, path in FLAT_ENV.items():
        if ".".join(path) == dotted:
            return f"{dotted} ({var})"
    return f"{dotted} (ORCH_{'__'.join(str(p).upper() for p in loc)})"


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning validation errors into one readable message."""
    try:
        return Settings(**overrides)
    except SecretFileError as exc:
        raise SettingsError(str(exc)) from None
    except ValidationError as exc:
        lines = [
            redact(f"invalid setting {_env_name(err['loc'])}: {err['msg']} (got {err.get('input')!r})")
            for err in exc.errors()
        ]
        raise SettingsError("\n".join(lines)) from None
