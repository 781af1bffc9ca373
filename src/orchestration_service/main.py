"""App factory and lifespan wiring. Nothing connects at import time: ``create_app``
builds a :class:`Container` and the lifespan starts and stops it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
from fastapi import APIRouter, FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response
from starlette.routing import BaseRoute

from orchestration_service import __version__, tracing
from orchestration_service.auth import ApiKeyMiddleware
from orchestration_service.background import cancel_and_wait
from orchestration_service.config import Settings, load_settings
from orchestration_service.cross_site import CrossSiteGuard
from orchestration_service.db.engine import Database, create_engine
from orchestration_service.db.migrate import is_up_to_date
from orchestration_service.events.bus import EventBus
from orchestration_service.events.handlers import EventProcessor
from orchestration_service.events.memory import MemoryBus
from orchestration_service.events.publisher import OutboxRelay
from orchestration_service.http import JSON, BodyLimitMiddleware, GZipWhenAccepted, install_error_handlers
from orchestration_service.logs import RequestContextMiddleware
from orchestration_service.metrics import GaugeRefresher, Metrics, MetricsMiddleware
from orchestration_service.redaction import redact
from orchestration_service.repositories.storage import SqlStorage
from orchestration_service.routers.fast_lane import FastLane, LaneCounts
from orchestration_service.routers.ui import mount_ui
from orchestration_service.services.auth import ApiKeyService
from orchestration_service.services.dispatcher import Dispatcher, Sweeper
from orchestration_service.services.event_log import EventLog, LogNotifier
from orchestration_service.services.lifecycle import Lifecycle
from orchestration_service.services.projects import ProjectService
from orchestration_service.services.provenance_store import ProvenanceStore
from orchestration_service.services.remote import make_http_client
from orchestration_service.services.routing_engine import RoutingEngine
from orchestration_service.services.task_manager import CompletionEstimator, TaskManager

log = logging.getLogger(__name__)


def create_bus(settings: Settings) -> EventBus:
    if settings.events.is_memory:
        return MemoryBus()
    from orchestration_service.events.rabbitmq import RabbitMQBus

    return RabbitMQBus(settings.events)


@dataclass
class Container:
    """Everything the service runs, built from settings. Routers read it from app.state."""

    settings: Settings
    db: Database
    storage: SqlStorage
    bus: EventBus
    lifecycle: Lifecycle
    tasks: TaskManager
    projects: ProjectService
    provenance: ProvenanceStore
    events: EventProcessor
    relay: OutboxRelay
    dispatcher: Dispatcher
    sweeper: Sweeper
    notifier: LogNotifier
    event_log: EventLog
    metrics: Metrics
    keys: ApiKeyService
    migrated: bool = False
    started: bool = False
    _bus_task: asyncio.Task[None] | None = field(default=None, repr=False)
    # The pooled HTTP client of the Agent and RAG calls (None when neither is configured).
    http_client: httpx.AsyncClient | None = field(default=None, repr=False)
    # Refreshes the database gauges of /metrics in the background (None: metrics off).
    gauges: GaugeRefresher | None = field(default=None, repr=False)

    @classmethod
    def build(cls, settings: Settings, metrics: Metrics | None = None) -> Container:
        metrics = metrics or Metrics()
        db = Database(
            create_engine(settings.storage),
            fast_pool_size=settings.storage.fast_pool_size,
            storage=settings.storage,
        )
        # The repositories of this database's backend, chosen here once (by its URL).
        storage = SqlStorage(db)
        bus = create_bus(settings)
        lifecycle = Lifecycle(settings)
        provenance = ProvenanceStore(storage)
        http = make_http_client(settings.routing)
        routing = RoutingEngine(settings, http)
        dispatcher = Dispatcher(storage, lifecycle, routing, settings)
        lifecycle.on_slot_freed = dispatcher.slot_freed
        tasks = TaskManager(
            storage,
            settings,
            lifecycle,
            CompletionEstimator(storage, settings.task_management.default_estimate_seconds),
            dispatcher=dispatcher,
            on_accepted=metrics.submitted,
        )
        events = EventProcessor(
            storage,
            lifecycle,
            provenance,
            retry_on_worker_failure=settings.task_management.retry_on_worker_failure,
            on_outcome=metrics.event_consumed,
        )
        events.rollback = provenance.rollback_handler(lifecycle)
        events.rollback_scope = provenance.check_rollback_scope
        events.rollback_project = provenance.rollback_project
        lifecycle.on_transition.append(metrics.transition)
        routing.on_routed.append(metrics.routed)
        relay = OutboxRelay(storage, bus, settings)
        notifier = LogNotifier(
            storage,
            poll_seconds=settings.events.relay_poll_seconds,
            max_streams=settings.events.max_open_streams,
            buffer_events=settings.events.stream_buffer_events,
        )
        relay.on_sequenced.append(notifier.wake)
        relay.on_published.append(metrics.events_published)
        return cls(
            settings=settings,
            db=db,
            storage=storage,
            bus=bus,
            lifecycle=lifecycle,
            tasks=tasks,
            projects=ProjectService(storage, settings),
            provenance=provenance,
            events=events,
            relay=relay,
            dispatcher=dispatcher,
            sweeper=Sweeper(storage, lifecycle, settings),
            http_client=http,
            notifier=notifier,
            event_log=EventLog(storage, notifier),
            metrics=metrics,
            keys=ApiKeyService(storage, cache_ttl=settings.auth.cache_ttl_seconds),
            gauges=GaugeRefresher(metrics, storage, settings.observability.metrics_refresh_seconds)
            if settings.observability.metrics_enabled
            else None,
        )

    async def start(self) -> None:
        await self.db.open()
        self.migrated = await is_up_to_date(self.settings.storage)
        if not self.migrated:
            log.warning(
                "database schema is not at the latest migration; run `orchestration-service db upgrade`"
            )
        bootstrap = self.settings.auth.bootstrap_admin_key
        if (
            bootstrap is not None
            and self.migrated
            and await self.keys.ensure_bootstrap(bootstrap.get_secret_value())
        ):
            log.info("auth: stored the bootstrap admin key (auth.bootstrap_admin_key)")
        await self.notifier.start()
        self._bus_task = asyncio.create_task(self._connect_bus(), name="bus-connect")
        self.relay.start()
        self.dispatcher.start()
        self.sweeper.start()
        if self.gauges is not None:
            self.gauges.start()
        self.dispatcher.wake()
        self.started = True

    def dependency_states(self) -> dict[str, str]:
        """Agent and RAG services: connected, degraded or unconfigured (no I/O)."""
        states = getattr(self.dispatcher.engine, "dependency_states", None)
        return dict(states()) if callable(states) else {}

    async def _connect_bus(self) -> None:
        """Connect and attach the consumer, retrying until the broker is there."""
        delay = 0.5
        while True:
            try:
                await self.bus.start()
                await self.bus.consume(self.events.handle_message)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("event bus unavailable (%s); retrying in %.1fs", redact(str(exc)), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15.0)

    async def stop(self) -> None:
        grace = self.settings.server.shutdown_grace_seconds
        if self._bus_task is not None:
            await cancel_and_wait(self._bus_task, "event bus connector")
        # Stop taking new events first, then finish the background work, then flush.
        with contextlib.suppress(Exception):
            await self.bus.stop_consuming()
        await self.dispatcher.stop()
        if self.http_client is not None:
            await self.http_client.aclose()
        await self.sweeper.stop()
        if self.gauges is not None:
            await self.gauges.stop()
            self.metrics.process_exit()
        await self.relay.stop(flush_timeout=min(grace, 10.0))
        await self.notifier.stop()
        await self.tasks.estimator.close()
        with contextlib.suppress(Exception):
            await self.bus.close()
        await self.db.close()
        self.started = False


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        container = Container.build(settings, metrics)
        app.state.container = container
        await container.start()
        try:
            yield
        finally:
            await container.stop()

    app = FastAPI(
        title="DATS Orchestration Service",
        version=__version__,
        description=(
            "Task lifecycle, routing and provenance for DATS. Errors are "
            "`application/problem+json` (RFC 9457) with a stable `type`."
        ),
        lifespan=lifespan,
        default_response_class=JSON,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    install_error_handlers(app)
    from orchestration_service import openapi
    from orchestration_service.routers import events, health, projects, provenance, streams, tasks

    # Starlette runs the last-added middleware first: request context, metrics, cross-site guard,
    # auth, body
    # limit, then the fast lane for the two hottest routes.
    if settings.server.fast_lane:
        app.state.fast_lane = LaneCounts()
        app.add_middleware(
            FastLane,
            status_route=_route(tasks.router, "/tasks/{task_id}", "GET"),
            submit_route=_route(tasks.router, "/tasks", "POST"),
            counts=app.state.fast_lane,
        )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.server.max_body_bytes)
    if settings.auth.enabled:
        app.add_middleware(ApiKeyMiddleware)
    # Before the key check and the fast lane: a cross-site POST is refused whatever its key.
    app.add_middleware(
        CrossSiteGuard, allowed_origins=settings.server.allowed_origins, auth_enabled=settings.auth.enabled
    )
    if settings.observability.metrics_enabled:
        app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(GZipWhenAccepted)  # skips text/event-stream
    app.add_middleware(RequestContextMiddleware, access_log_enabled=settings.observability.access_log)
    tracing.configure(settings.observability.otel_exporter)
    app.add_middleware(tracing.TracingMiddleware)  # outermost: every span below is its child

    app.state.route_templates = {}
    for module in (health, tasks, streams, projects, provenance, events):
        app.include_router(module.router, prefix="/api/v1")
        for route in module.router.routes:
            app.state.route_templates[id(route)] = "/api/v1" + getattr(route, "path", "")
    if settings.observability.metrics_enabled:

        @app.get("/metrics", include_in_schema=False)
        async def prometheus_metrics(request: Request) -> Response:
            body = await metrics.render(request.app.state.container)
            return Response(body, media_type=CONTENT_TYPE_LATEST)

    mount_ui(app)
    openapi.install(app)
    return app


def _route(router: APIRouter, path: str, method: str) -> BaseRoute:
    for route in router.routes:
        if getattr(route, "path", None) == path and method in getattr(route, "methods", ()):
            return route
    raise LookupError(f"no route {method} {path}")


def app_factory() -> FastAPI:
    """Entry for ``uvicorn --factory`` (settings from the environment)."""
    app = create_app()
    # In the server process, modules and the app live for ever: keep them out of every GC
    # pass (the collector's cost showed in profiles). Not done for apps built in tests.
    gc.collect()
    gc.freeze()
    # Requests allocate many short-lived objects: collect the young generation less often
    # (the default, 700, ran a collection every few requests).
    gc.set_threshold(20_000, 20, 20)
    return app
