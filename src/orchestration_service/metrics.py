"""Prometheus metrics. One registry per app (tests build many apps in one process).

Labels take only bounded values: route templates, states, priorities, known event names
("other" for anything else), analyzers, dependencies. Never task, project or event ids.
Counters count what committed (they are bumped after the transaction).

Gauges that describe shared state (tasks by state, outbox backlog) are read from the
database by a background :class:`GaugeRefresher` every ``observability.metrics_refresh_seconds``
(one reader at a time across replicas and workers, by a PostgreSQL advisory try-lock); a
scrape only renders memory, so scraping costs the database nothing.

With several worker processes (``serve --workers N``) ``serve`` points PROMETHEUS_MULTIPROC_DIR
at a fresh directory: every process writes its values there and a scrape, whichever process
answers it, reports the sum of counters and histograms over the whole server.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestration_service.domain.events import (
    CONSUMED_EVENTS,
    PUBLISHED_EVENTS,
    TASK_READY_PREFIX,
    TASK_STATUS_PREFIX,
)
from orchestration_service.domain.lifecycle import TaskStatus
from orchestration_service.domain.vocabulary import ANALYZERS, TIERS
from orchestration_service.http import route_template

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The shared directory of a multi-process server (None for a single process)."""
    return os.environ.get(MULTIPROC_ENV) or None


def prepare_multiprocess(workers: int) -> str | None:
    """For ``serve --workers N`` (N > 1), before the workers start: a fresh
    PROMETHEUS_MULTIPROC_DIR (they inherit the variable; prometheus_client reads it when they
    import it), removed when the server process exits. A directory the operator set is used
    as is and kept. Returns the directory (None with one worker)."""
    if workers <= 1:
        return None
    path = multiprocess_dir()
    if path is None:
        path = tempfile.mkdtemp(prefix="orch-metrics-")
        os.environ[MULTIPROC_ENV] = path
        atexit.register(shutil.rmtree, path, True)
    return path


_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_KNOWN_EVENTS = frozenset((*PUBLISHED_EVENTS, *CONSUMED_EVENTS))
_STATES = frozenset(s.value for s in TaskStatus)


def bounded_event(name: str) -> str:
    if name in _KNOWN_EVENTS:
        return name
    if name.startswith(TASK_READY_PREFIX) and name.count(".") == 2:
        return name if name.rsplit(".", 1)[1] in TIERS else "other"
    if name.startswith(TASK_STATUS_PREFIX):
        return name if name.rsplit(".", 1)[1] in _STATES else "other"
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
        # Gauges say how the processes of one server combine: the database readings are the
        # same for all (the most recent wins), listeners add up, a dependency is up only if
        # every live process reaches it.
        self.tasks = Gauge(
            "orch_tasks",
            "Tasks by state (from the database)",
            ["state"],
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.published = Counter("orch_events_published_total", "Events published", ["event"], registry=r)
        self.consumed = Counter(
            "orch_events_consumed_total",
            "Events consumed (bus and HTTP ingress)",
            ["event", "outcome"],
            registry=r,
        )
        self.outbox_pending = Gauge(
            "orch_outbox_pending",
            "Outbox events not yet published",
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.outbox_oldest = Gauge(
            "orch_outbox_oldest_age_seconds",
            "Age of the oldest unpublished outbox event",
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        # Exactly one process of all replicas leads the relay: the sum over a deployment is 1,
        # and 0 for long means nothing sequences or publishes events (an alert).
        self.relay_leader = Gauge(
            "orch_outbox_relay_leader",
            "1 in the process that leads the outbox relay",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.oldest_pending = Gauge(
            "orch_tasks_oldest_pending_age_seconds",
            "Age of the oldest task still pending (waiting for routing or a concurrency slot)",
            registry=r,
            multiprocess_mode="livemostrecent",
        )
        self.routing_duration = Histogram(
            "orch_routing_duration_seconds",
            "Time to decide a task's route",
            ["analyzer"],
            registry=r,
            buckets=(0.001, 0.01, 0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120),
        )
        self.dependency_up = Gauge(
            "orch_dependency_up",
            "1 when a dependency is reachable",
            ["dependency"],
            registry=r,
            multiprocess_mode="livemin",
        )
        self.sse_listeners = Gauge(
            "orch_sse_listeners",
            "Open event-feed and task-stream listeners",
            registry=r,
            multiprocess_mode="livesum",
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
        label = analyzer if analyzer in ANALYZERS else "other"
        self.routing_duration.labels(label).observe(seconds)

    def relay_leadership(self, leading: bool) -> None:
        self.relay_leader.set(1 if leading else 0)

    def database_read(
        self,
        tasks_by_state: Mapping[str, int],
        outbox_pending: int,
        outbox_oldest_seconds: float,
        oldest_pending_task_seconds: float = 0.0,
    ) -> None:
        """The gauge refresher's reading (``services.gauges``)."""
        self.dependency_up.labels("database").set(1)
        for state in TaskStatus:
            self.tasks.labels(state.value).set(tasks_by_state.get(state.value, 0))
        self.outbox_pending.set(outbox_pending)
        self.outbox_oldest.set(outbox_oldest_seconds)
        self.oldest_pending.set(oldest_pending_task_seconds)

    def database_reachable(self, reachable: bool) -> None:
        """The refresher reached the database (another replica read the gauges) or not."""
        self.dependency_up.labels("database").set(1 if reachable else 0)

    # -- scrape ------------------------------------------------------------------------
    async def render(self, *, broker: str, listeners: int, dependencies: Mapping[str, str]) -> bytes:
        """From memory only (no I/O): the refresher keeps the database gauges current. The
        caller passes what it read from the app: the broker's health, the open listeners and
        the Agent/RAG dependency states."""
        self.dependency_up.labels("broker").set(1 if broker == "connected" else 0)
        self.sse_listeners.set(listeners)
        for name, status in dependencies.items():
            self.dependency_up.labels(name).set(1 if status == "connected" else 0)
        path = multiprocess_dir()
        if path is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    @staticmethod
    def process_exit() -> None:
        """Drop this process's live gauges from a multi-process server's totals."""
        if multiprocess_dir() is not None:
            with contextlib.suppress(Exception):
                multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


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
