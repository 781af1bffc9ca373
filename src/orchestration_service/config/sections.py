"""The configuration's sections: one typed model per YAML section (``task_management``,
``routing``, ``storage``, ``events`` …), each field with its default and description."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from orchestration_service.db.urls import normalize_database_url
from orchestration_service.domain.events import CASCADE_EXCHANGE, QA_EXCHANGE, TASK_EXCHANGE
from orchestration_service.domain.lifecycle import Priority


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class TaskManagementSettings(_Section):
    default_priority: Priority = Field(
        Priority.NORMAL, description="Priority of a task submitted without one."
    )
    max_concurrent_per_project: int = Field(
        10, ge=1, le=10_000, description="Tasks of one project in flight (running + validating) at once."
    )
    timeout_default_seconds: int = Field(
        600, ge=1, description="How long a task may stay in flight before the sweep retries or fails it."
    )
    max_attempts_default: int = Field(
        3, ge=1, le=100, description="Attempts (worker runs) before a rejected task fails."
    )
    retry_on_worker_failure: bool = Field(
        False, description="Retry (instead of fail) when a worker reports task.failed with retryable true."
    )
    default_estimate_seconds: int = Field(
        120, ge=1, description="Estimated duration before any task of the kind has completed."
    )
    sweep_interval_seconds: float = Field(5.0, gt=0, description="How often the timeout sweep runs.")
    heartbeat_timeout_seconds: int | None = Field(
        None,
        ge=1,
        le=7 * 24 * 3600,
        description="A running task with no task.progress or output for this long is timed out "
        "(retried, then failed); unset = no heartbeat timeout. A task's "
        "options.heartbeat_timeout_seconds overrides it.",
    )


class RoutingSettings(_Section):
    agent_service_url: str | None = Field(
        None, description="Agent Service base URL (…/api/v1); unset = built-in analyzer only."
    )
    rag_service_url: str | None = Field(
        None, description="RAG Service base URL (…/api/v1); unset = no retrieved context."
    )
    agent_timeout_seconds: float = Field(60.0, gt=0, le=3600)
    rag_timeout_seconds: float = Field(10.0, gt=0, le=600)
    rules_file: str | None = Field(
        None, description="YAML rules of the built-in analyzer; unset = the packaged defaults."
    )
    max_subtasks: int = Field(20, ge=1, le=1000, description="Largest decomposition plan accepted.")
    max_depth: int = Field(
        5, ge=1, le=50, description="Deepest nesting of subtasks (a top-level task is depth 0)."
    )
    max_total_subtasks: int = Field(
        100,
        ge=1,
        le=10_000,
        description="Most subtasks in one task tree, all levels together; a plan that would "
        "exceed it is not used and its task runs whole.",
    )
    max_concurrent_analyses: int = Field(
        8, ge=1, le=1000, description="Tasks analysed at once (Agent and RAG calls in flight)."
    )
    rag_max_tokens: int = Field(2000, ge=1, le=1_000_000, description="max_tokens of a RAG query.")
    remote_retries: int = Field(
        2,
        ge=0,
        le=10,
        description="Retries of an Agent or RAG call on connection errors and 5xx, within its timeout.",
    )
    breaker_failure_threshold: int = Field(
        5, ge=1, le=1000, description="Consecutive failed calls that open a service's circuit breaker."
    )
    breaker_reset_seconds: float = Field(
        30.0, gt=0, le=3600, description="How long an open breaker rejects calls before one trial call."
    )
    health_probe_seconds: float = Field(
        5.0, ge=0, le=600, description="How long a GET /health probe of Agent/RAG is cached."
    )

    @field_validator("agent_service_url", "rag_service_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")


class StorageSettings(_Section):
    database_url: str = Field(
        "sqlite+aiosqlite:///var/orchestration.db",
        description="sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DB",
    )
    provenance_table: Literal["provenance_records"] = "provenance_records"
    # Per process: with several workers or replicas, keep the sum under PostgreSQL's
    # max_connections (100 by default). A small pool also queues work cheaply on few cores.
    pool_size: int = Field(10, ge=1, le=500)
    max_overflow: int = Field(5, ge=0, le=500)
    fast_pool_size: int = Field(
        24,
        ge=1,
        le=500,
        description="PostgreSQL connections (per process) of the hot paths' asyncpg pool: task "
        "submission and status reads. A busy event loop hands a connection back only when it gets "
        "round to the result, so under load this pool needs more than the requests in flight at "
        "the database; 24 cut submit and status p95 by about a third against 10 in the benchmark.",
    )

    # Every PostgreSQL connection, the pools' and the service's own long-lived ones (relay
    # leader, its publisher, the feed's listener, wake-ups): a half-open one must fail in
    # seconds, not in the kernel's minutes, so that requests answer 503 instead of hanging,
    # the pools replace it, and the relay leadership moves on (issues 16 and 21).
    connect_timeout_seconds: float = Field(
        10.0, gt=0, le=600, description="Opening a PostgreSQL connection gives up after this."
    )
    pool_timeout_seconds: float = Field(
        5.0,
        gt=0,
        le=600,
        description="Waiting for a free pooled connection gives up after this (a request answers "
        "503 with Retry-After).",
    )
    pool_statement_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=86_400,
        description="Longest statement on a pooled connection (requests and background loops): "
        "PostgreSQL cancels it after this, and the service gives up on a connection that has not "
        "answered a second later (a half-open connection) and replaces it.",
    )
    ping_timeout_seconds: float = Field(
        1.0,
        gt=0,
        le=60,
        description="/health/ready and /health/detailed report the database down when SELECT 1 "
        "gets no answer within this.",
    )
    keepalive_idle_seconds: int = Field(
        10,
        ge=1,
        le=7200,
        description="TCP keepalives on every PostgreSQL connection, both ends: first probe "
        "after this much silence …",
    )
    keepalive_interval_seconds: int = Field(
        5, ge=1, le=600, description="… then one every this many seconds …"
    )
    keepalive_count: int = Field(
        3, ge=1, le=100, description="… and the peer is dead after this many unanswered."
    )
    tcp_user_timeout_seconds: float = Field(
        20.0,
        ge=0,
        le=3600,
        description="Sent data unacknowledged this long closes the connection (both ends; 0 = the kernel's).",
    )
    statement_timeout_seconds: float = Field(
        30.0,
        ge=0,
        le=86_400,
        description="Longest statement on the service's own long-lived connections (0 = none).",
    )
    idle_in_transaction_timeout_seconds: float = Field(
        60.0,
        ge=0,
        le=86_400,
        description="PostgreSQL ends a session (pooled or own) that stays idle this long inside a "
        "transaction (0 = never).",
    )

    @field_validator("database_url")
    @classmethod
    def _driver(cls, value: str) -> str:
        return normalize_database_url(value)


class RabbitMQSettings(_Section):
    exchanges: list[str] = Field(default_factory=lambda: [TASK_EXCHANGE, CASCADE_EXCHANGE, QA_EXCHANGE])
    queues: list[str] = Field(default_factory=lambda: ["orchestration-events"])
    prefetch: int = Field(
        16,
        ge=1,
        le=10_000,
        description="Unacknowledged deliveries per process. Each handler needs a database "
        "connection: far past storage.pool_size + max_overflow, deliveries only wait in the pool.",
    )
    management_url: str | None = Field(
        None,
        description="RabbitMQ management API (http://USER:PASS@HOST:15672); when set, GET /queues "
        "finds the queues bound to task.ready.{tier} through it, else it passive-declares "
        "fleet.worker_queues.",
    )
    heartbeat_queue_max_length: int = Field(
        10_000,
        ge=1,
        description="task.progress waiting in their own queue (<queue>.heartbeats) at most; "
        "beyond, the oldest are dropped (only a task's latest report matters).",
    )
    heartbeat_prefetch: int = Field(
        256,
        ge=1,
        le=10_000,
        description="Unacknowledged task.progress deliveries per process, and the largest batch "
        "of them handled together (beyond, they wait in their bounded queue).",
    )


class EventsSettings(_Section):
    broker_url: str = Field(
        "memory://", description="memory:// (in-process) or amqp://USER:PASS@HOST:PORT/VHOST"
    )
    rabbitmq: RabbitMQSettings = Field(default_factory=RabbitMQSettings)
    retention_days: float = Field(
        7.0, gt=0, description="How long published events stay in the event log (the SSE feed)."
    )
    processed_retention_days: float = Field(
        14.0,
        gt=0,
        description="How long a consumed event's id is remembered for de-duplication; keep it longer "
        "than any redelivery or client retry (RabbitMQ redelivers within hours).",
    )
    name_prefix: str = Field("", description="Prefix for exchange and queue names (test isolation).")
    relay_batch_size: int = Field(500, ge=1, le=10_000)
    sse_heartbeat_seconds: float = Field(15.0, gt=0, description="Comment heartbeat on idle SSE streams.")
    sse_progress_seconds: float = Field(
        1.0,
        gt=0,
        description="How often the process reads the progress of every task followed by a stream "
        "(one statement for all of them) to send new task.progress.",
    )
    max_open_streams: int = Field(
        256,
        ge=1,
        le=100_000,
        description="Open SSE streams (event feed and task streams together) per process; "
        "one more is answered 503 with Retry-After.",
    )
    stream_buffer_events: int = Field(
        1000,
        ge=10,
        le=100_000,
        description="Events buffered for one SSE stream; a reader that falls this far behind is "
        "disconnected and resumes with Last-Event-ID.",
    )
    relay_poll_seconds: float = Field(
        1.0, gt=0, description="Safety poll of the outbox; commits wake the relay at once."
    )
    relay_leader_check_seconds: float = Field(
        5.0,
        gt=0,
        le=600,
        description="The relay leader checks its lock connection (SELECT 1) this often.",
    )
    relay_leader_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=600,
        description="A leader whose check gets no answer within this steps down; a follower ends a "
        "leader session silent for check + timeout seconds and takes over.",
    )

    @field_validator("broker_url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if not value.startswith(("memory://", "amqp://", "amqps://")):
            raise ValueError("must be memory:// or amqp://…")
        return value

    @property
    def is_memory(self) -> bool:
        return self.broker_url.startswith("memory://")


class ProjectsSettings(_Section):
    auto_create: bool = Field(
        True,
        description="A submission to an unknown project creates it; false: 404 until POST /projects does.",
    )
    cache_seconds: float = Field(
        2.0,
        ge=0,
        le=300,
        description="How long a process keeps a project's settings for the submit path without "
        "checking: a change is seen at once by its process and, on PostgreSQL, by the others when "
        "its NOTIFY arrives; this bounds a missed notification.",
    )


class FleetSettings(_Section):
    worker_stale_seconds: float = Field(
        300.0, gt=0, description="A worker unseen this long is reported stale by GET /workers."
    )
    seen_interval_seconds: float = Field(
        1.0,
        ge=0,
        le=600,
        description="A process records a worker's last_seen at most this often (its task attempts "
        "are recorded on every event): a chatty worker does not queue on its row's lock.",
    )
    worker_queues: list[str] = Field(
        default_factory=lambda: ["task.ready.{tier}"],
        description="Without a management API, the worker queues GET /queues asks the broker "
        "about (passive declare), `{tier}` replaced by each tier; events.name_prefix applies.",
    )
    dead_letter_max_payload_bytes: int = Field(
        65_536, ge=1024, le=1_048_576, description="A stored dead letter keeps its event up to this size."
    )
    dead_letters_kept: int = Field(
        10_000, ge=100, le=10_000_000, description="The newest this many dead letters are kept."
    )


class RedisSettings(_Section):
    """Kept from the seed's configuration. No component uses Redis yet."""

    host: str = "127.0.0.1"
    port: int = Field(6379, ge=1, le=65535)
    db: int = Field(0, ge=0)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64, description="HTTP worker processes; more than one needs PostgreSQL.")
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body accepted; larger is a 413."
    )
    shutdown_grace_seconds: float = Field(20.0, ge=0)
    keep_alive_seconds: float = Field(
        75.0,
        ge=1,
        le=3600,
        description="How long an idle client connection stays open. Longer than clients' own "
        "idle limits (httpx: 5 s), so a client never reuses a connection the server is closing.",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins (scheme://host[:port]) besides the service's own that may "
        "send POST/PUT/PATCH/DELETE requests; any other Origin is refused (403 cross-site-request).",
    )
    fast_lane: bool = Field(
        True,
        description="Answer task status reads and submissions without FastAPI's per-request layers "
        "(middleware/fast_lane.py); errors always go through the reference routes.",
    )


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "console", "auto"] = "auto"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class AuthSettings(_Section):
    enabled: bool = Field(False, description="Require API keys on /api/v1 (health and /metrics stay open).")
    cache_ttl_seconds: float = Field(5.0, ge=0, le=3600, description="How long a key lookup is cached.")
    allow_insecure: bool = Field(
        False,
        description="Let `serve` listen on a non-loopback address with auth off (a warning at "
        "every start); without it, that refuses to start.",
    )
    bootstrap_admin_key: SecretStr | None = Field(
        None,
        description="An admin key for every project, stored (hashed) at start if absent, so a "
        "deployment has its first key without the CLI (at least 32 characters, e.g. "
        "`openssl rand -hex 32`). Revoking it sticks: a revoked key is not stored again.",
    )


class ObservabilitySettings(_Section):
    metrics_enabled: bool = Field(True, description="Serve Prometheus metrics on GET /metrics.")
    otel_exporter: Literal["none", "console", "otlp"] = Field(
        "none", description="OpenTelemetry traces; the standard OTEL_* variables configure the exporter."
    )
    access_log: bool = Field(True, description="One JSON line per HTTP request at INFO.")
    metrics_refresh_seconds: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="How often the database-read gauges of /metrics (tasks by state, outbox "
        "backlog) are refreshed in the background; a scrape never queries the database.",
    )
