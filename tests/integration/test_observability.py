"""Metrics, JSON logs with request context, and W3C trace context across the bus."""

from __future__ import annotations

import io
import logging
import re
import uuid

import orjson
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orchestration_service.logs import JsonFormatter
from tests.conftest import Service
from tests.integration.test_event_lifecycle import Harness, output_event
from tests.integration.test_tasks_api import submit, wait_for_status

REQUIRED_METRICS = (
    "orch_http_request_duration_seconds",
    "orch_tasks_submitted_total",
    "orch_task_transitions_total",
    "orch_tasks",
    "orch_events_published_total",
    "orch_events_consumed_total",
    "orch_outbox_pending",
    "orch_outbox_oldest_age_seconds",
    "orch_routing_duration_seconds",
    "orch_dependency_up",
    "orch_outbox_relay_leader",
    "orch_tasks_oldest_pending_age_seconds",
)


async def test_metrics_names_labels_and_no_ids(service: Service) -> None:
    task = await submit(service, priority="high")
    tid = task["task_id"]
    await wait_for_status(service, tid, "running")
    await service.client.get(f"/api/v1/tasks/{tid}")
    h = Harness(service)
    await h.send(output_event(tid))
    await wait_for_status(service, tid, "validating")
    await h.published("task.ready.tiny", tid)
    assert service.container.gauges is not None
    await service.container.gauges.refresh()  # the background refresher's round, now
    r = await service.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    for name in REQUIRED_METRICS:
        assert f"# TYPE {name} " in text, name
    assert 'orch_tasks_submitted_total{priority="high"} 1.0' in text
    assert 'orch_task_transitions_total{from_state="pending",to_state="running"} 1.0' in text
    assert 'orch_task_transitions_total{from_state="running",to_state="validating"} 1.0' in text
    assert 'orch_tasks{state="validating"} 1.0' in text
    assert 'orch_events_consumed_total{event="task.output.created",outcome="processed"} 1.0' in text
    assert re.search(r'orch_events_published_total\{event="task.created"\} [1-9]', text)
    assert 'route="/api/v1/tasks/{task_id}"' in text
    assert 'orch_dependency_up{dependency="database"} 1.0' in text
    assert service.container.relay.is_leader, "the only process leads the relay"
    assert "\norch_outbox_relay_leader 1.0\n" in text
    assert "\norch_tasks_oldest_pending_age_seconds 0.0\n" in text, "no task is pending"
    assert tid not in text, "a task id leaked into a metric label"
    assert "proj-1" not in text, "a project id leaked into a metric label"


async def test_unknown_event_types_do_not_create_new_label_values(service: Service) -> None:
    h = Harness(service)
    for i in range(3):
        await h.send(b'{"specversion": "1.0"}', key=f"weird.{i}.{uuid.uuid4()}")
    text = (await service.client.get("/metrics")).text
    assert 'orch_events_consumed_total{event="other",outcome="dead_lettered"} 3.0' in text


async def test_access_log_is_json_with_the_request_id(service: Service) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("orchestration_service.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        r = await service.client.post(
            "/api/v1/tasks",
            json={"description": "secret plans for world domination", "project_id": "logs"},
            headers={"X-Request-ID": "req-abc-123"},
        )
        generated = await service.client.get("/api/v1/health")
    finally:
        access.removeHandler(handler)
    assert r.headers["x-request-id"] == "req-abc-123"
    assert len(generated.headers["x-request-id"]) == 32
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    post = next(x for x in lines if x.get("method") == "POST")
    assert post["request_id"] == "req-abc-123"
    assert post["event"] == "request" and post["level"] == "info" and post["status"] == 201
    assert post["route"] == "/api/v1/tasks" and "timestamp" in post and "duration_ms" in post
    assert "world domination" not in stream.getvalue()


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


async def test_trace_context_crosses_the_bus(service: Service, spans: InMemorySpanExporter) -> None:
    spans.clear()
    trace_id = uuid.uuid4().hex
    caller = f"00-{trace_id}-{'1' * 16}-01"
    r = await service.client.post(
        "/api/v1/tasks", json={"description": "trace me", "project_id": "tr"}, headers={"traceparent": caller}
    )
    tid = r.json()["task_id"]
    h = Harness(service)
    created = (await h.published("task.created", tid))[0]
    assert created["traceparent"].split("-")[1] == trace_id, "task.created continues the caller's trace"
    ready = (await h.published("task.ready.tiny", tid))[0]
    assert ready["traceparent"].split("-")[1] == trace_id, "dispatch joins the task's trace"
    worker_parent = f"00-{uuid.uuid4().hex}-{'2' * 16}-01"
    await h.send(output_event(tid, traceparent=None) | {"traceparent": worker_parent})
    await wait_for_status(service, tid, "validating")
    consumed = [s for s in spans.get_finished_spans() if s.name == "consume task.output.created"]
    assert consumed, [s.name for s in spans.get_finished_spans()]
    parent = consumed[-1].parent
    assert parent is not None and format(parent.span_id, "016x") == "2" * 16
    assert format(consumed[-1].context.trace_id, "032x") == worker_parent.split("-")[1]
    post = [s for s in spans.get_finished_spans() if s.name == "POST /api/v1/tasks"]
    assert post and format(post[-1].context.trace_id, "032x") == trace_id
    status = (await h.published("task.status.validating", tid))[0]
    assert status["traceparent"].split("-")[1] == worker_parent.split("-")[1]
    names = {s.name for s in spans.get_finished_spans()}
    assert "db.transaction" in names and any(n.startswith("publish task.") for n in names)
