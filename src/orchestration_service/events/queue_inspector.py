"""The broker's figures of the worker queues for GET /queues (``services.fleet.QueueInspector``).

Two sources. With ``events.rabbitmq.management_url``: the management API lists the queues
bound to ``task.ready.{tier}`` on the task exchange (whatever their names), then each
queue's depth and consumers. Without it: a passive declare of the queue names in
``fleet.worker_queues`` (AMQP cannot list bindings), answered by the broker itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, unquote

import httpx
from yarl import URL

from orchestration_service.config import Settings
from orchestration_service.domain.events import TASK_EXCHANGE, TASK_READY_PREFIX
from orchestration_service.domain.topics import topic_matches
from orchestration_service.events.bus import BusUnavailable
from orchestration_service.events.rabbitmq import RabbitMQBus
from orchestration_service.redaction import error_text
from orchestration_service.services.fleet import BrokerQueue, BrokerReport

log = logging.getLogger(__name__)

MANAGEMENT_TIMEOUT = 5.0


class PassiveDeclareInspector:
    source = "passive-declare"

    def __init__(self, bus: RabbitMQBus, settings: Settings) -> None:
        self.bus = bus
        self.templates = settings.fleet.worker_queues
        self.prefix = settings.events.name_prefix

    def names(self, tier: str) -> list[str]:
        return [self.prefix + t.replace("{tier}", tier) for t in self.templates]

    async def inspect(self, tiers: Sequence[str]) -> BrokerReport:
        wanted = {tier: self.names(tier) for tier in tiers}
        try:
            stats = await self.bus.queue_stats([n for names in wanted.values() for n in names])
        except (BusUnavailable, Exception) as exc:
            return BrokerReport(self.source, {}, f"the broker did not answer: {error_text(exc)}")
        queues = {
            tier: [BrokerQueue(n, stats.get(n) is not None, *(stats.get(n) or (None, None))) for n in names]
            for tier, names in wanted.items()
        }
        return BrokerReport(self.source, queues)


class ManagementApiInspector:
    source = "management-api"

    def __init__(self, settings: Settings) -> None:
        url = URL(settings.events.rabbitmq.management_url or "")
        broker = URL(settings.events.broker_url)
        # The URL's path is kept: a management API behind a proxy may live under a prefix.
        self.base = str(url.with_user(None)).rstrip("/")
        user = url.user or broker.user or "guest"
        password = url.password or broker.password or "guest"
        self.auth = httpx.BasicAuth(unquote(user), unquote(password))
        vhost = broker.path[1:] if broker.path not in ("", "/") else "/"
        self.vhost = quote(vhost, safe="")
        self.exchange = quote(settings.events.name_prefix + TASK_EXCHANGE, safe="")

    async def inspect(self, tiers: Sequence[str]) -> BrokerReport:
        try:
            async with httpx.AsyncClient(auth=self.auth, timeout=MANAGEMENT_TIMEOUT) as client:
                return await self._inspect(client, tiers)
        except (httpx.HTTPError, ValueError) as exc:
            return BrokerReport(self.source, {}, f"the management API did not answer: {error_text(exc)}")

    async def _get(self, client: httpx.AsyncClient, path: str) -> Any:
        response = await client.get(f"{self.base}/api/{path}")
        response.raise_for_status()
        return response.json()

    async def _inspect(self, client: httpx.AsyncClient, tiers: Sequence[str]) -> BrokerReport:
        bindings = await self._get(client, f"exchanges/{self.vhost}/{self.exchange}/bindings/source")
        queues: dict[str, list[BrokerQueue]] = {}
        seen: dict[str, BrokerQueue] = {}
        for tier in tiers:
            key = TASK_READY_PREFIX + tier
            names = sorted(
                {
                    b["destination"]
                    for b in bindings
                    if b.get("destination_type") == "queue" and topic_matches(b.get("routing_key", ""), key)
                }
            )
            for name in names:
                if name not in seen:
                    q = await self._get(client, f"queues/{self.vhost}/{quote(name, safe='')}")
                    seen[name] = BrokerQueue(
                        name, True, int(q.get("messages", 0)), int(q.get("consumers", 0))
                    )
            queues[tier] = [seen[n] for n in names]
        return BrokerReport(self.source, queues)
