"""Calls to the Agent and RAG services are CLIENT spans and carry a W3C ``traceparent``
header continuing the task's trace; OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES name the
service's resource (issue 16, defect 14)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from orchestration_service import __version__, tracing
from tests.integration.fake_services import Agent, FakeService
from tests.integration.test_observability import spans  # noqa: F401  (the SDK fixture)
from tests.integration.test_routing import serve, wait_routed
from tests.integration.test_tasks_api import submit

TRACEPARENT = re.compile(r"^00-(?P<trace>[0-9a-f]{32})-(?P<span>[0-9a-f]{16})-(?P<flags>[0-9a-f]{2})$")


@pytest.fixture(scope="module")
def fake_agent() -> Iterator[FakeService]:
    fake = FakeService("traced-agent")
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def fake_rag() -> Iterator[FakeService]:
    fake = FakeService("traced-rag")
    fake.start()
    yield fake
    fake.stop()


async def test_agent_and_rag_calls_carry_traceparent_of_a_client_span(
    clean_db: str,
    fake_agent: FakeService,
    fake_rag: FakeService,
    spans: InMemorySpanExporter,  # noqa: F811
) -> None:
    fake_agent.reset()
    Agent().install(fake_agent)
    fake_rag.reset()
    fake_rag.answer("/query", {"context": "## Related", "sources": []})
    spans.clear()
    trace_id = uuid.uuid4().hex
    routing = {"agent_service_url": fake_agent.url, "rag_service_url": fake_rag.url}
    async with serve(clean_db, **routing) as h:
        r = await h.svc.client.post(
            "/api/v1/tasks",
            json={"description": "trace my routing", "project_id": "p-trace"},
            headers={"traceparent": f"00-{trace_id}-{'3' * 16}-01"},
        )
        await wait_routed(h.svc, r.json()["task_id"])
        # A task submitted without a trace context gets a trace (and a header) too.
        await wait_routed(h.svc, (await submit(h.svc))["task_id"])
    client_spans = {
        format(s.context.span_id, "016x"): s for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT
    }
    for fake, path in ((fake_agent, "/analyze"), (fake_agent, "/estimate"), (fake_rag, "/query")):
        calls = fake.calls_to(path)
        assert calls, path
        for call in calls:
            m = TRACEPARENT.match(call.headers.get("traceparent", ""))
            assert m, (path, call.headers)
            span = client_spans.get(m["span"])
            assert span is not None, "the header names the client span of the call"
            assert span.name == f"POST {path}"
            assert span.attributes is not None
            assert span.attributes["peer.service"] in ("agent-service", "rag-service")
            assert span.attributes["http.response.status_code"] == 200
        first = TRACEPARENT.match(calls[0].headers["traceparent"])
        assert first and first["trace"] == trace_id, "the call continues the submitter's trace"


def test_resource_honours_otel_service_name_and_attributes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    default = tracing.resource().attributes
    assert default["service.name"] == "orchestration-service"
    assert default["service.version"] == __version__

    monkeypatch.setenv("OTEL_SERVICE_NAME", "orch-eu-1")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci,service.namespace=dats")
    attrs = tracing.resource().attributes
    assert attrs["service.name"] == "orch-eu-1"
    assert attrs["deployment.environment"] == "ci"
    assert attrs["service.namespace"] == "dats"

    monkeypatch.delenv("OTEL_SERVICE_NAME")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attributes")
    assert tracing.resource().attributes["service.name"] == "from-attributes"
