"""The management-API source of GET /queues against a fake management API (a real HTTP
server on 127.0.0.1 answering as RabbitMQ's does), and which source the container picks."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from orchestration_service.config import load_settings
from orchestration_service.container import create_bus, create_queue_inspector
from orchestration_service.domain.vocabulary import TIERS
from orchestration_service.events.queue_inspector import ManagementApiInspector, PassiveDeclareInspector
from tests.integration.fake_services import FakeService, Reply

BINDINGS = [
    {"destination": "workers-tiny", "destination_type": "queue", "routing_key": "task.ready.tiny"},
    {"destination": "workers-any", "destination_type": "queue", "routing_key": "task.ready.*"},
    {"destination": "audit", "destination_type": "exchange", "routing_key": "#"},
    {"destination": "created", "destination_type": "queue", "routing_key": "task.created"},
]


@pytest.fixture
def management() -> Iterator[FakeService]:
    fake = FakeService("rabbitmq-management")
    fake.start()
    yield fake
    fake.stop()


def settings(management_url: str | None, prefix: str = "") -> Any:
    rabbit: dict[str, Any] = {"management_url": management_url} if management_url else {}
    return load_settings(
        events={"broker_url": "amqp://bob:secret@127.0.0.1:5672/", "name_prefix": prefix, "rabbitmq": rabbit}
    )


async def test_the_queues_bound_to_each_tier_with_their_depth_and_consumers(management: FakeService) -> None:
    # The vhost "/" is %2F in the URL; the fake sees the decoded path.
    management.answer("/api/exchanges///p.task.events/bindings/source", BINDINGS)
    management.answer("/api/queues///workers-tiny", {"name": "workers-tiny", "messages": 7, "consumers": 2})
    management.answer("/api/queues///workers-any", {"name": "workers-any", "messages": 1, "consumers": 0})
    inspector = ManagementApiInspector(settings(f"http://admin:pw@127.0.0.1:{management.port}/api/v1", "p."))
    report = await inspector.inspect(TIERS)
    assert (report.source, report.error) == ("management-api", None)
    tiny = {q.name: (q.messages, q.consumers) for q in report.queues["tiny"]}
    assert tiny == {"workers-tiny": (7, 2), "workers-any": (1, 0)}
    assert [q.name for q in report.queues["frontier"]] == ["workers-any"]
    # Each queue asked once, whatever the number of tiers it serves; the URL's user name sent.
    assert len(management.calls_to("/api/queues///workers-any")) == 1
    auth = management.calls_to("/api/queues///workers-tiny")[0].headers["authorization"]
    assert base64.b64decode(auth.split()[1]) == b"admin:pw"


async def test_a_failing_management_api_is_reported_not_raised(management: FakeService) -> None:
    management.answer("/api/exchanges///task.events/bindings/source", Reply({"error": "boom"}, status=500))
    report = await ManagementApiInspector(settings(f"http://127.0.0.1:{management.port}/api/v1")).inspect(
        TIERS
    )
    assert report.source == "management-api" and report.queues == {}
    assert report.error is not None and "500" in report.error
    # The broker's credentials when the management URL has none.
    headers = management.calls_to("/api/exchanges///task.events/bindings/source")[0].headers
    assert base64.b64decode(headers["authorization"].split()[1]) == b"bob:secret"


def test_the_container_picks_the_source() -> None:
    assert create_queue_inspector(load_settings(), create_bus(load_settings())) is None  # in-process bus
    with_api = settings("http://127.0.0.1:15672")
    assert isinstance(create_queue_inspector(with_api, create_bus(with_api)), ManagementApiInspector)
    plain = settings(None)
    passive = create_queue_inspector(plain, create_bus(plain))
    assert isinstance(passive, PassiveDeclareInspector) and passive.names("small") == ["task.ready.small"]
