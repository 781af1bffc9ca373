"""The composition root: :class:`Container` builds everything the service runs from settings
(the one place that picks implementations: the storage backend by the database URL, the event
bus by ``events.url``), and starts and stops it. ``main.create_app`` builds one per app in the
lifespan; tests build their own. Nothing else in the package imports this module."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import httpx

from orchestration_service.background import cancel_and_wait
from orchestration_service.config import Settings
from orchestration_service.db.engine import Database, create_engine
from orchestration_service.db.migrate import is_up_to_date
from orchestration_service.events.bus import EventBus
from orchestration_service.events.handlers import EventProcessor
from orchestration_service.events.heartbeats import HeartbeatBatches
from orchestration_service.events.memory import MemoryBus
from orchestration_service.events.publisher import OutboxRelay
from orchestration_service.events.replay import DeadLetterReplay
from orchestration_service.metrics import Metrics
from orchestration_service.redaction import redact
from orchestration_service.repositories.storage import SqlStorage
from orchestration_service.services.auth import ApiKeyService
from orchestration_service.services.dead_letters import DeadLetterService
from orchestration_service.services.dispatcher import Dispatcher, Sweeper
from orchestration_service.services.event_log import EventLog, LogNotifier
from orchestration_service.services.fleet import FleetService, QueueInspector
from orchestration_service.services.gauges import GaugeRefresher
from orchestration_service.services.lifecycle import Lifecycle
from orchestration_service.services.progress_board import ProgressBoard
from orchestration_service.services.project_settings import ProjectDirectory
from orchestration_service.services.projects import ProjectService
from orchestration_service.services.provenance.composition import record_parent_completion
from orchestration_service.services.provenance_store import ProvenanceStore
from orchestration_service.services.remote import make_http_client
from orchestration_service.services.reviews import ReviewService
from orchestration_service.services.routing_engine import RoutingEngine
from orchestration_service.services.task_manager import CompletionEstimator, TaskManager

log = logging.getLogger(__name__)


def create_bus(settings: Settings) -> EventBus:
    if settings.events.is_memory:
        return MemoryBus()
    from orchestration_service.events.rabbitmq import RabbitMQBus

    return RabbitMQBus(settings.events)


def create_queue_inspector(settings: Settings, bus: EventBus) -> QueueInspector | None:
    """Where GET /queues gets the broker's figures (None: the in-process bus has none)."""
    from orchestration_service.events.queue_inspector import ManagementApiInspector, PassiveDeclareInspector
    from orchestration_service.events.rabbitmq import RabbitMQBus

    if not isinstance(bus, RabbitMQBus):
        return None
    if settings.events.rabbitmq.management_url:
        return ManagementApiInspector(settings)
    return PassiveDeclareInspector(bus, settings)


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
    reviews: ReviewService
    events: EventProcessor
    relay: OutboxRelay
    dispatcher: Dispatcher
    sweeper: Sweeper
    notifier: LogNotifier
    event_log: EventLog
    metrics: Metrics
    keys: ApiKeyService
    fleet: FleetService
    dead_letters: DeadLetterService
    replay: DeadLetterReplay
    progress_board: ProgressBoard
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
        lifecycle.record_parent = record_parent_completion
        directory = ProjectDirectory(storage, settings)
        tasks = TaskManager(
            storage,
            settings,
            lifecycle,
            CompletionEstimator(storage, settings.task_management.default_estimate_seconds),
            dispatcher=dispatcher,
            on_accepted=metrics.submitted,
            projects=directory,
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
        reviews = ReviewService(storage, lifecycle, provenance)
        events.reviews = reviews
        fleet = FleetService(storage, settings, create_queue_inspector(settings, bus))
        events.fleet = fleet
        dead_letters = DeadLetterService(storage, settings)
        events.on_dead_letter = dead_letters.record
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
        relay.on_leadership.append(metrics.relay_leadership)
        return cls(
            settings=settings,
            db=db,
            storage=storage,
            bus=bus,
            lifecycle=lifecycle,
            tasks=tasks,
            projects=ProjectService(storage, settings, directory, on_limit_changed=dispatcher.slot_freed),
            provenance=provenance,
            reviews=reviews,
            events=events,
            relay=relay,
            dispatcher=dispatcher,
            sweeper=Sweeper(storage, lifecycle, settings),
            http_client=http,
            notifier=notifier,
            event_log=EventLog(storage, notifier),
            metrics=metrics,
            keys=ApiKeyService(storage, cache_ttl=settings.auth.cache_ttl_seconds),
            fleet=fleet,
            dead_letters=dead_letters,
            replay=DeadLetterReplay(dead_letters, events),
            progress_board=ProgressBoard(storage, settings.events.sse_progress_seconds),
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
        if self.migrated:
            await self._store_bootstrap_key()
        await self.notifier.start()
        await self.projects.directory.listen()  # other processes' project changes
        self._bus_task = asyncio.create_task(self._connect_bus(), name="bus-connect")
        self.relay.start()
        self.dispatcher.start()
        self.sweeper.start()
        if self.gauges is not None:
            self.gauges.start()
        self.dispatcher.wake()
        self.started = True

    async def _store_bootstrap_key(self) -> None:
        bootstrap = self.settings.auth.bootstrap_admin_key
        if bootstrap is not None and await self.keys.ensure_bootstrap(bootstrap.get_secret_value()):
            log.info("auth: stored the bootstrap admin key (auth.bootstrap_admin_key)")

    async def refresh_migrated(self) -> bool:
        """Whether the schema is current. A replica started with --no-migrate before the
        migration ran (the Kubernetes Job, `db upgrade`) asks again at each readiness probe, and
        becomes ready, with its bootstrap key stored, once the schema is current: no restart."""
        if not self.migrated and await is_up_to_date(self.settings.storage):
            await self._store_bootstrap_key()
            self.migrated = True
            log.info("database schema is now at the latest migration")
        return self.migrated

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
                await self.bus.consume(self.events.handle_message, HeartbeatBatches(self.events))
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
        await self.progress_board.close()
        await self.projects.directory.close()
        await self.tasks.estimator.close()
        with contextlib.suppress(Exception):
            await self.bus.close()
        await self.db.close()
        self.started = False
