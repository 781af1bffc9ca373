"""OpenTelemetry traces, off unless configured (``ORCH_OTEL_EXPORTER=otlp|console|none``).

Calls to the Agent and RAG services are CLIENT spans and carry their ``traceparent``
header (``services/remote.py``). The W3C trace context crosses the bus: every CloudEvent
the service publishes carries the ``traceparent`` of the span that caused it, and a
consumed event's ``traceparent`` becomes the parent of the span that handles it. Tasks keep
the trace context of their submission, so the work done later for them (routing, dispatch,
timeouts) joins the same trace.

With the exporter ``none`` no SDK is installed: spans are the API's no-op spans, which still
carry an incoming trace context through, so propagation works even when nothing is recorded.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import default_getter
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestration_service import __version__
from orchestration_service.http import route_template

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource

log = logging.getLogger(__name__)

_propagator = TraceContextTextMapPropagator()
_configured = False


def tracer() -> trace.Tracer:
    return trace.get_tracer("orchestration_service")


def resource() -> Resource:
    """The service's resource: OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win; without
    them the service is ``orchestration-service`` at this version."""
    from opentelemetry.sdk.resources import Resource

    detected = Resource.create()  # the SDK's defaults, then the OTEL_* variables
    attributes = dict(detected.attributes)
    if str(attributes.get("service.name", "")).startswith("unknown_service"):
        del attributes["service.name"]  # the SDK's placeholder: no variable named the service
    defaults = Resource({"service.name": "orchestration-service", "service.version": __version__})
    return defaults.merge(Resource(attributes, detected.schema_url))


def outgoing_headers() -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) of the current span, for an outgoing request."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier


def configure(exporter: str) -> None:
    """Install the SDK with the chosen exporter (once per process; the standard OTEL_*
    variables, e.g. OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES,
    configure it)."""
    global _configured
    if exporter == "none" or _configured:
        return
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    provider = TracerProvider(resource=resource())
    span_exporter: SpanExporter
    if exporter == "console":
        span_exporter = ConsoleSpanExporter(out=sys.stdout)
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span_exporter = OTLPSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(provider)
    _configured = True
    log.info("tracing on", extra={"exporter": exporter})


_recording = False


def is_recording() -> bool:
    """Whether spans are recorded (an SDK tracer provider is installed: by ``configure``, or
    by a test); without one, spans only carry an incoming context through, and work that
    starts none of its own can skip them."""
    global _recording
    if not _recording:
        provider = trace.get_tracer_provider()
        _recording = not isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))
    return _recording


def has_active_span() -> bool:
    return trace.get_current_span().get_span_context().is_valid


def current_traceparent() -> str | None:
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def context_from(traceparent: str | None) -> otel_context.Context | None:
    if not traceparent:
        return None
    return _propagator.extract({"traceparent": traceparent})


@contextlib.contextmanager
def span(
    name: str,
    *,
    parent_traceparent: str | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span]:
    """A span, child of ``parent_traceparent`` when given, else of the current span."""
    ctx = context_from(parent_traceparent)
    with tracer().start_as_current_span(name, context=ctx, kind=kind, attributes=attributes) as s:
        yield s


class TracingMiddleware:
    """One SERVER span per HTTP request, continuing an incoming ``traceparent`` header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in _TRACE_HEADERS
        }
        if not headers and not is_recording():
            # Nothing to record and no incoming context to carry: a no-op span would only
            # cost time.
            await self.app(scope, receive, send)
            return
        ctx = _propagator.extract(headers, getter=default_getter)
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with tracer().start_as_current_span(
            f"HTTP {scope['method']}", context=ctx, kind=SpanKind.SERVER
        ) as s:
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                route = route_template(scope)
                if s.is_recording():
                    if route:
                        s.update_name(f"{scope['method']} {route}")
                        s.set_attribute("http.route", route)
                    s.set_attribute("http.request.method", scope["method"])
                    s.set_attribute("http.response.status_code", status)


_TRACE_HEADERS = {b"traceparent", b"tracestate"}
