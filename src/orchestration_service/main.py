"""App factory and lifespan wiring. Nothing connects at import time: ``create_app``
builds a :class:`Container` and the lifespan starts and stops it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fastapi import FastAPI

from orchestration_service import __version__
from orchestration_service.config import Settings, load_settings
from orchestration_service.db.engine import Database, create_engine
from orchestration_service.db.migrate import is_up_to_date
from orchestration_service.events.bus import EventBus
from orchestration_service.events.handlers import EventProcessor
from orchestration_service.events.memory import MemoryBus
from orchestration_service.events.publisher import OutboxRelay
from orchestration_service.http import JSON, BodyLimitMiddleware, install_error_handlers
from orchestration_service.services.dispatcher import Router, Sweeper
from orchestration_service.services.event_log import EventLog, LogNotifier
from orchestration_service.services.lifecycle import Lifecycle
from orchestration_service.services.projects import ProjectService
from orchestration_service.services.provenance_store import ProvenanceStore
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
    bus: EventBus
    lifecycle: Lifecycle
    tasks: TaskManager
    projects: ProjectService
    provenance: ProvenanceStore
    events: EventProcessor
    relay: OutboxRelay
    router: Router
    sweeper: Sweeper
    notifier: LogNotifier
    event_log: EventLog
    migrated: bool = False
    started: bool = False
    _bus_task: asyncio.Task[None] | None = field(default=None, repr=False)

    @classmethod
    def build(cls, settings: Settings) -> Container:
        db = Database(create_engine(settings.storage))
        bus = create_bus(settings)
        lifecycle = Lifecycle(settings)
        provenance = ProvenanceStore(db)
        routing = RoutingEngine(settings)
        router = Router(db, lifecycle, routing, settings)
        tasks = TaskManager(
            db,
            settings,
            lifecycle,
            CompletionEstimator(db, settings.task_management.default_estimate_seconds),
            on_submitted=router.wake,
        )
        events = EventProcessor(
            db,
            lifecycle,
            provenance,
            retry_on_worker_failure=settings.task_management.retry_on_worker_failure,
        )
        relay = OutboxRelay(db, bus, settings)
        notifier = LogNotifier(db, poll_seconds=settings.events.relay_poll_seconds)
        relay.on_sequenced.append(notifier.wake)
        return cls(
            settings=settings,
            db=db,
            bus=bus,
            lifecycle=lifecycle,
            tasks=tasks,
            projects=ProjectService(db, settings),
            provenance=provenance,
            events=events,
            relay=relay,
            router=router,
            sweeper=Sweeper(db, lifecycle, settings),
            notifier=notifier,
            event_log=EventLog(db, notifier),
        )

    async def start(self) -> None:
        self.migrated = await is_up_to_date(self.settings.storage)
        if not self.migrated:
            log.warning(
                "database schema is not at the latest migration; run `orchestration-service db upgrade`"
            )
        await self.notifier.start()
        self._bus_task = asyncio.create_task(self._connect_bus(), name="bus-connect")
        self.relay.start()
        self.router.start()
        self.sweeper.start()
        self.router.wake()
        self.started = True

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
                log.warning("event bus unavailable (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15.0)

    async def stop(self) -> None:
        grace = self.settings.server.shutdown_grace_seconds
        if self._bus_task is not None:
            self._bus_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._bus_task
        # Stop taking new events first, then finish the background work, then flush.
        with contextlib.suppress(Exception):
            await self.bus.stop_consuming()
        await self.router.stop()
        await self.sweeper.stop()
        await self.relay.stop(flush_timeout=min(grace, 10.0))
        await self.notifier.stop()
        with contextlib.suppress(Exception):
            await self.bus.close()
        await self.db.close()
        self.started = False


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        container = Container.build(settings)
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
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.server.max_body_bytes)

    from orchestration_service import openapi
    from orchestration_service.routers import events, health, projects, provenance, streams, tasks

    for module in (health, tasks, streams, projects, provenance, events):
        app.include_router(module.router, prefix="/api/v1")
    openapi.install(app)
    return app


def app_factory() -> FastAPI:
    """Entry for ``uvicorn --factory`` (settings from the environment)."""
    return create_app()
