"""Prometheus metrics. One registry per app (tests build many apps in one process).

Labels take only bounded values: route templates, states, priorities, known event names
("other" for anything else), analyzers, dependencies. Never task, project or event ids.
Counters count what committed (they are bumped after the transaction).
Gauges that describe shared state (tasks by state, outbox backlog) are read from the
database at scrape time, so every replica reports the same truth.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestration_service.domain.events import CONSUMED_EVENTS, TASK_READY_PREFIX, TASK_STATUS_PREFIX
from orchestration_service.domain.lifecycle import TaskStatus
from orchestration_service.http import route_template

if TYPE_CHECKING:
    from orchestration_service.main import Container

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_KNOWN_PUBLISHED = {
    "task.created",
    "task.cancelled",
    "task.completed",
    "task.failed",
    "artifact.tainted",
    "artifact.suspect",
}


def bounded_event(name: str) -> str:
    if name in _KNOWN_PUBLISHED or name in CONSUMED_EVENTS:
        return name
    if name.startswith(TASK_READY_PREFIX) and name.count(".") == 2:
        return name if name.rsplit(".", 1)[1] in ("tiny", "small", "large", "frontier") else "other"
    if name.startswith(TASK_STATUS_PREFIX):
        return name if name.rsplit(".", 1)[1] in {s.value for s in TaskStatus} else "other"
    return "other"


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.http_duration = Histogram(
            "orch_http_request_duration_seconds",
            "HTTP request duration",
            ["method", "route", "status"],
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.tasks_submitted = Counter(
            "orch_tasks_submitted_total", "Tasks accepted by submission", ["priority"], registry=r
        )
        self.transitions = Counter(
            "orch_task_transitions_total", "Task state transitions", ["from_state", "to_state"], registry=r
        )
        self.tasks = Gauge("orch_tasks", "Tasks by state (from the database)", ["state"], registry=r)
        self.published = Counter("orch_events_published_total", "Events published", ["event"], registry=r)
        self.consumed = Counter(
            "orch_events_consumed_total",
            "Events consumed (bus and HTTP ingress)",
            ["event", "outcome"],
            registry=r,
        )
        self.outbox_pending = Gauge("orch_outbox_pending", "Outbox events not yet published", registry=r)
        self.outbox_oldest = Gauge(
            "orch_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox event", registry=r
        )
        self.routing_duration = Histogram(
            "orch_routing_duration_seconds",
            "Time to decide a task's route",
            ["analyzer"],
            registry=r,
            buckets=(0.001, 0.01, 0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120),
        )
        self.dependency_up = Gauge(
            "orch_dependency_up", "1 when a dependency is reachable", ["dependency"], registry=r
        )
        self.sse_listeners = Gauge(
            "orch_sse_listeners", "Open event-feed and task-stream listeners", registry=r
        )
        for state in TaskStatus:
            self.tasks.labels(state.value)
        # Labelled children by label values: prometheus_client's labels() takes a lock and
        # builds keys on every call, which showed in the hot paths' profiles.
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # -- hooks the services call -------------------------------------------------------
    def request(self, method: str, route: str, status: str, seconds: float) -> None:
        self._child(self.http_duration, method, route, status).observe(seconds)

    def transition(self, from_state: str | None, to_state: str) -> None:
        self._child(self.transitions, from_state or "none", to_state).inc()

    def submitted(self, priority: str) -> None:
        self._child(self.tasks_submitted, priority).inc()

    def events_published(self, names: list[str]) -> None:
        for name in names:
            self._child(self.published, bounded_event(name)).inc()

    def event_consumed(self, name: str, outcome: str) -> None:
        self.consumed.labels(bounded_event(name), outcome).inc()

    def routed(self, analyzer: str, seconds: float) -> None:
        label = analyzer if analyzer in ("builtin", "agent-service") else "other"
        self.routing_duration.labels(label).observe(seconds)

    # -- scrape ------------------------------------------------------------------------
    async def render(self, c: Container) -> bytes:
        from orchestration_service.repositories.outbox import OutboxRepository
        from orchestration_service.repositories.tasks import TaskRepository

        try:
            async with c.db.read() as conn:
                counts = await TaskRepository(conn).counts_by_state()
                pending, oldest = await OutboxRepository(conn).pending_stats()
            for state in TaskStatus:
                self.tasks.labels(state.value).set(counts.get(state.value, 0))
            self.outbox_pending.set(pending)
            self.outbox_oldest.set(oldest)
            self.dependency_up.labels("database").set(1)
        except Exception:
            self.dependency_up.labels("database").set(0)
        self.dependency_up.labels("broker").set(1 if c.bus.health() == "connected" else 0)
        self.sse_listeners.set(c.notifier.listener_count)
        for name, status in c.dependency_states().items():
            self.dependency_up.labels(name).set(1 if status == "connected" else 0)
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Times every HTTP request, labelled by route template (bounded), not the raw path."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            template = route_template(scope) or "unmatched"
            self.metrics.request(scope["method"], template, str(status), time.perf_counter() - start)
