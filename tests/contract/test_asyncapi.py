"""``contracts/asyncapi.yaml`` against the AsyncAPI 2.6.0 schema, and against the code.

* The document is a valid AsyncAPI 2.6.0 document (vendored JSON Schema, draft-07), its AMQP
  bindings are valid AMQP 0.3.0 bindings, and its own examples validate.
* It names every channel the code binds and every event the code publishes; its enums and the
  required fields of the consumed payloads equal the code's.
* The real service (in-process, SQLite, in-memory bus) is driven through every published
  event; each envelope it publishes must validate against its channel's message.
* Hand-written consumed events (``event_fixtures``) are accepted, or rejected, by both the
  document and the service's own parsing.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator
from pydantic import BaseModel
from referencing import Registry
from referencing.jsonschema import DRAFT7

import orchestration_service
from orchestration_service.domain import events as ev
from orchestration_service.domain.errors import EventRejected
from orchestration_service.domain.lifecycle import Priority, TaskStatus
from orchestration_service.domain.vocabulary import DOMAINS, MODES, QA_PROFILES, TIERS
from orchestration_service.events.bus import OutboundMessage
from orchestration_service.events.handlers import SCHEMAS, parse_envelope, validate_payload
from orchestration_service.schemas.events import ArtifactIn, CloudEvent, InputIn
from tests.conftest import make_settings, start_service, truncate_all
from tests.contract.event_fixtures import INVALID, VALID, Case
from tests.integration.test_event_lifecycle import Harness, cloud_event, output_event
from tests.integration.test_tasks_api import submit, wait_for_status
from tests.waiting import all_published, eventually

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "contracts" / "asyncapi.yaml"
VENDOR = ROOT / "contracts" / "vendor"
DOC_URI = "urn:dats:orchestration-service:asyncapi"
SCHEMA_REF = "#/components/schemas/"
MESSAGE_REF = "#/components/messages/"


def _load_json(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VENDOR / name).read_text())
    return data


def _pointer(*parts: str) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


class Contract:
    """The AsyncAPI document with helpers to find channels and validate against them."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.registry: Registry[Any] = Registry().with_resource(DOC_URI, DRAFT7.create_resource(doc))
        self.channels: dict[str, dict[str, Any]] = doc["channels"]
        self._templates = [(name, self._template(name)) for name in self.channels if "{" in name]

    @staticmethod
    def _template(name: str) -> re.Pattern[str]:
        parts = re.split(r"\{(\w+)\}", name)
        pattern = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^.]+)" for i, p in enumerate(parts))
        return re.compile(pattern + r"\Z")

    def validator(self, pointer: str) -> Draft7Validator:
        return Draft7Validator(
            {"$ref": f"{DOC_URI}#{pointer}"},
            registry=self.registry,
            format_checker=Draft7Validator.FORMAT_CHECKER,
        )

    def errors(self, pointer: str, instance: Any) -> list[str]:
        return [
            f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in sorted(self.validator(pointer).iter_errors(instance), key=lambda e: list(e.path))
        ]

    def channel_for(self, routing_key: str) -> tuple[str, dict[str, str]] | None:
        """The channel documenting a routing key, with its parameter values."""
        if routing_key in self.channels:
            return routing_key, {}
        for name, regex in self._templates:
            m = regex.match(routing_key)
            if m:
                return name, m.groupdict()
        return None

    def message_pointer(self, channel: str, operation: str) -> str:
        ref = self.channels[channel][operation]["message"]["$ref"]
        assert ref.startswith(MESSAGE_REF), ref
        return ref[1:]

    def exchange(self, channel: str) -> str:
        name: str = self.channels[channel]["bindings"]["amqp"]["exchange"]["name"]
        return name

    def schema(self, name: str) -> dict[str, Any]:
        s: dict[str, Any] = self.doc["components"]["schemas"][name]
        return s

    def check_published(self, msg: OutboundMessage) -> list[str]:
        """Everything wrong with one published message; empty when it matches the document."""
        key, env = msg.routing_key, msg.envelope
        found = self.channel_for(key)
        if found is None:
            return [f"{key}: undocumented event name (no channel)"]
        channel, params = found
        if "subscribe" not in self.channels[channel]:
            return [f"{key}: channel {channel} documents no subscribe (published) operation"]
        problems = []
        if msg.exchange != self.exchange(channel):
            problems.append(f"{key}: published on {msg.exchange}, documented on {self.exchange(channel)}")
        if env.get("type") != ev.TYPE_PREFIX + key:
            problems.append(f"{key}: CloudEvent type {env.get('type')!r} does not match the routing key")
        for param, value in params.items():
            where = _pointer("channels", channel, "parameters", param, "schema")
            problems += [f"{key}: parameter {param}: {e}" for e in self.errors(where, value)]
            location = self.channels[channel]["parameters"][param]["location"]
            if self._at(env, location) != value:
                problems.append(
                    f"{key}: {location} is {self._at(env, location)!r}, the routing key says {value!r}"
                )
        pointer = self.message_pointer(channel, "subscribe") + "/payload"
        problems += [f"{key}: {e}" for e in self.errors(pointer, env)]
        return problems

    @staticmethod
    def _at(envelope: dict[str, Any], location: str) -> Any:
        node: Any = envelope
        for part in location.split("#", 1)[1].strip("/").split("/"):
            node = node.get(part) if isinstance(node, dict) else None
        return node


@pytest.fixture(scope="module")
def contract() -> Contract:
    return Contract(yaml.safe_load(DOCUMENT.read_text()))


# -- the document ------------------------------------------------------------------------------
def test_document_is_valid_asyncapi_2_6(contract: Contract) -> None:
    schema = _load_json("asyncapi-2.6.0.schema.json")
    Draft7Validator.check_schema(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in Draft7Validator(schema).iter_errors(contract.doc)
    ]
    assert errors == []
    assert contract.doc["asyncapi"] == "2.6.0"
    assert contract.doc["info"]["version"] == orchestration_service.__version__
    for name, schema_ in contract.doc["components"]["schemas"].items():
        Draft7Validator.check_schema(schema_)  # each payload schema is a sound draft-07 schema
        assert name


def test_the_vendored_schema_catches_a_broken_document(contract: Contract) -> None:
    schema = _load_json("asyncapi-2.6.0.schema.json")
    broken = copy.deepcopy(contract.doc)
    broken["channels"]["task.created"]["subscribe"]["bogus"] = True
    broken["components"]["schemas"]["Tier"]["type"] = 5
    assert len(list(Draft7Validator(schema).iter_errors(broken))) >= 2


def test_amqp_bindings_are_valid(contract: Contract) -> None:
    registry: Registry[Any] = Registry()
    kinds = {}
    for kind in ("channel", "operation", "message"):
        s = _load_json(f"amqp-0.3.0-{kind}.schema.json")
        registry = registry.with_resource(s["$id"], DRAFT7.create_resource(s))
        kinds[kind] = s
    ext = _load_json("specification-extension.schema.json")
    registry = registry.with_resource(ext["$id"], DRAFT7.create_resource(ext))

    def errors(kind: str, binding: dict[str, Any], where: str) -> list[str]:
        v = Draft7Validator(kinds[kind], registry=registry)
        return [f"{where}: {e.message}" for e in v.iter_errors(binding)]

    problems = []
    for name, channel in contract.channels.items():
        problems += errors("channel", channel["bindings"]["amqp"], name)
        for op in ("publish", "subscribe"):
            if op in channel:
                problems += errors("operation", channel[op]["bindings"]["amqp"], f"{name} {op}")
    for name, message in contract.doc["components"]["messages"].items():
        if "bindings" in message:
            problems += errors("message", message["bindings"]["amqp"], name)
    assert problems == []


def test_only_a_local_server(contract: Contract) -> None:
    servers = contract.doc["servers"]
    assert servers == {"local": {**servers["local"], "url": "127.0.0.1:5672", "protocol": "amqp"}}


def test_every_message_example_validates(contract: Contract) -> None:
    problems = []
    for name, message in contract.doc["components"]["messages"].items():
        for example in message.get("examples", []):
            pointer = f"/components/messages/{name}/payload"
            problems += [
                f"{name}/{example['name']}: {e}" for e in contract.errors(pointer, example["payload"])
            ]
    assert problems == []


def test_consumed_message_examples_are_accepted_by_the_code(contract: Contract) -> None:
    for name in ev.CONSUMED_EVENTS:
        message = contract.message_pointer(name, "publish").rsplit("/", 1)[1]
        examples = contract.doc["components"]["messages"][message]["examples"]
        assert examples, f"{message} has no example"
        for example in examples:
            event_name, _ = validate_payload(parse_envelope(example["payload"]))
            assert event_name == name


# -- the document names what the code does ----------------------------------------------------
def _published_names() -> list[str]:
    return [
        ev.TASK_CREATED,
        *(ev.TASK_READY_PREFIX + tier for tier in TIERS),
        ev.TASK_CANCELLED,
        ev.TASK_COMPLETED,
        ev.TASK_FAILED,
        *(ev.TASK_STATUS_PREFIX + state.value for state in TaskStatus),
        ev.ARTIFACT_TAINTED,
        ev.ARTIFACT_SUSPECT,
        ev.REVIEW_COMPLETED,
    ]


@pytest.mark.parametrize("name", _published_names())
def test_every_published_event_has_a_channel(contract: Contract, name: str) -> None:
    found = contract.channel_for(name)
    assert found is not None, f"{name} is not in asyncapi.yaml"
    channel, _ = found
    assert "subscribe" in contract.channels[channel], f"{channel}: no subscribe operation"
    assert contract.exchange(channel) == ev.exchange_for(name)


def test_consumed_channels_match_the_code_bindings(contract: Contract) -> None:
    documented = set()
    for name, channel in contract.channels.items():
        if "publish" not in channel:
            continue
        amqp = channel["bindings"]["amqp"]
        if name in ev.HEARTBEAT_EVENTS:  # a bounded queue of their own, dropping the oldest
            assert amqp["x-queue"]["name"] == "orchestration-events.heartbeats"
            assert amqp["x-queue"]["overflow"] == "drop-head" and "deadLetterExchange" not in amqp["x-queue"]
        else:
            assert amqp["x-queue"]["name"] == "orchestration-events"
            assert amqp["x-queue"]["deadLetterExchange"] == "orchestration.dlx"
        assert amqp["exchange"]["name"] in amqp["x-bound-exchanges"]
        documented |= {(exchange, name) for exchange in amqp["x-bound-exchanges"]}
    assert documented == set(ev.CONSUMED_BINDINGS)
    assert {name for _, name in documented} == set(ev.CONSUMED_EVENTS) == set(SCHEMAS)
    for exchange in {x for x, _ in documented}:
        assert exchange in ev.EXCHANGES


def test_channel_templates_and_enums_match_the_code(contract: Contract) -> None:
    assert contract.schema("Tier")["enum"] == list(TIERS)
    assert contract.schema("TaskState")["enum"] == [s.value for s in TaskStatus]
    assert contract.schema("Priority")["enum"] == [p.value for p in Priority]
    assert contract.schema("Domain")["enum"] == list(DOMAINS)
    assert contract.schema("Mode")["enum"] == list(MODES)
    assert contract.schema("QaProfile")["enum"] == list(QA_PROFILES)
    assert "task.ready.{tier}" in contract.channels
    assert "task.status.{state}" in contract.channels


def _required(model: type[BaseModel]) -> set[str]:
    return {name for name, f in model.model_fields.items() if f.is_required()}


CONSUMED_DATA = {
    ev.TASK_OUTPUT_CREATED: "TaskOutputCreatedData",
    ev.TASK_VALIDATED: "TaskValidatedData",
    ev.TASK_REJECTED: "TaskRejectedData",
    ev.TASK_FAILED: "TaskFailedData",
    ev.ROLLBACK_REQUESTED: "RollbackRequestedData",
    ev.REVIEW_REQUESTED: "ReviewRequestedData",
    ev.REVIEW_COMPLETED: "ReviewCompletedData",
    ev.TASK_PROGRESS: "TaskProgressData",
}


@pytest.mark.parametrize(
    ("schema", "model"),
    [
        *((CONSUMED_DATA[name], SCHEMAS[name]) for name in ev.CONSUMED_EVENTS),
        ("Artifact", ArtifactIn),
        ("Input", InputIn),
        ("CloudEventBase", CloudEvent),
    ],
)
def test_consumed_schemas_have_the_models_fields(
    contract: Contract, schema: str, model: type[BaseModel]
) -> None:
    s = contract.schema(schema)
    assert set(s.get("required", [])) == _required(model)
    assert set(model.model_fields) <= set(s["properties"])
    assert s.get("additionalProperties", True) is True  # tolerant reader


# -- published events, from the running service -----------------------------------------------
@dataclass
class Run:
    published: list[OutboundMessage] = field(default_factory=list)
    sent: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    dead_letters: list[str | None] = field(default_factory=list)


@pytest.fixture(scope="module")
async def run(sqlite_url: str) -> Run:
    """Drive tasks through every path that publishes, on SQLite with the in-memory bus."""
    await truncate_all(sqlite_url)
    svc, lifespan = await start_service(make_settings(sqlite_url))
    h = Harness(svc)
    result = Run()

    async def send(envelope: dict[str, Any], key: str, exchange: str = ev.TASK_EXCHANGE) -> None:
        result.sent.append((exchange, key, envelope))
        await h.send(envelope, key, exchange)

    def qa(name: str, data: dict[str, Any]) -> dict[str, Any]:
        return cloud_event(name, data, source="/qa-service")

    async def completed() -> None:
        tid = await h.running_task(
            project_id="contract-a", description="Create a Python function that calculates fibonacci numbers"
        )
        art = {"id": "art-a", "type": "code", "path": "fib.py", "size_bytes": 42, "language": "python"}
        await send(output_event(tid, artifacts=[art]), ev.TASK_OUTPUT_CREATED)
        await wait_for_status(svc, tid, "validating")
        await send(
            qa(ev.TASK_VALIDATED, {"task_id": tid, "confidence": 0.9}), ev.TASK_VALIDATED, ev.QA_EXCHANGE
        )
        await wait_for_status(svc, tid, "completed")

    async def validated_without_output() -> None:
        tid = await h.running_task(project_id="contract-b")
        arts = [{"id": "art-b", "type": "document", "location": "s3://b/readme.md"}]
        await send(qa(ev.TASK_VALIDATED, {"task_id": tid, "artifacts": arts}), ev.TASK_VALIDATED)
        await wait_for_status(svc, tid, "completed")

    async def rejected_retried_failed() -> None:
        tid = await h.running_task(project_id="contract-c", options={"max_attempts": 2})
        await send(output_event(tid), ev.TASK_OUTPUT_CREATED)
        await send(qa(ev.TASK_REJECTED, {"task_id": tid, "feedback": "handle n=0"}), ev.TASK_REJECTED)
        await h.published(ev.TASK_READY_PREFIX + "tiny", tid, where=lambda e: e["data"]["attempt"] == 2)
        await send(output_event(tid), ev.TASK_OUTPUT_CREATED)
        feedback = {"failing": ["test_zero"]}
        rejected = qa(ev.TASK_REJECTED, {"task_id": tid, "reason": "still wrong", "feedback": feedback})
        await send(rejected, ev.TASK_REJECTED, ev.QA_EXCHANGE)
        await wait_for_status(svc, tid, "failed")

    async def rejected_once_failed() -> None:
        tid = await h.running_task(project_id="contract-d", options={"max_attempts": 1})
        await send(qa(ev.TASK_REJECTED, {"task_id": tid, "reason": "wrong"}), ev.TASK_REJECTED)
        await wait_for_status(svc, tid, "failed")

    async def cancelled() -> None:
        for i, body in enumerate(({"reason": "no longer needed"}, None)):
            tid = await h.running_task(project_id=f"contract-e{i}")
            r = await svc.client.post(f"/api/v1/tasks/{tid}/cancel", json=body)
            assert r.status_code == 200, r.text

    async def worker_failed() -> None:
        tid = await h.running_task(project_id="contract-f")
        failed = cloud_event(ev.TASK_FAILED, {"task_id": tid, "error": {"code": "OOM"}, "retryable": True})
        await send(failed, ev.TASK_FAILED)
        await wait_for_status(svc, tid, "failed")

    async def timed_out() -> None:
        tid = await h.running_task(project_id="contract-g", options={"timeout_seconds": 1, "max_attempts": 1})
        await wait_for_status(svc, tid, "failed", timeout=10)

    async def every_tier() -> None:
        for tier in TIERS:
            tid = await h.running_task(project_id="contract-h", options={"tier": tier})
            await svc.client.post(f"/api/v1/tasks/{tid}/cancel")

    async def pending_cancelled() -> None:
        task = await submit(svc, project_id="contract-i")
        await svc.client.post(f"/api/v1/tasks/{task['task_id']}/cancel")

    async def reviewed() -> None:
        # Each decision through the API (published), and one from a review UI (consumed).
        for i, (action, body) in enumerate(
            [
                ("approve", {"comment": "fine"}),
                ("approve", None),
                ("reject", {"reason": "wrong"}),
                ("request-changes", {"feedback": "more"}),
                (None, None),
            ]
        ):
            tid = await h.running_task(project_id=f"contract-r{i}")
            await send(output_event(tid), ev.TASK_OUTPUT_CREATED)
            await wait_for_status(svc, tid, "validating")
            requested = qa(ev.REVIEW_REQUESTED, {"task_id": tid, "review_id": f"qa-{i}", "reason": "unsure"})
            await send(requested, ev.REVIEW_REQUESTED, ev.QA_EXCHANGE)
            await wait_for_status(svc, tid, "awaiting_review")
            if action is None:
                decided = cloud_event(
                    ev.REVIEW_COMPLETED, {"task_id": tid, "decision": "rejected"}, source="/review-ui"
                )
                await send(decided, ev.REVIEW_COMPLETED, ev.QA_EXCHANGE)
                await wait_for_status(svc, tid, "failed")
                continue
            rid = (await svc.client.get("/api/v1/reviews", params={"project_id": f"contract-r{i}"})).json()[
                "items"
            ][0]["review_id"]
            r = await svc.client.post(f"/api/v1/reviews/{rid}/{action}", json=body)
            assert r.status_code == 200, r.text

    flows: list[Callable[[], Awaitable[None]]] = [
        reviewed,
        completed,
        validated_without_output,
        rejected_retried_failed,
        rejected_once_failed,
        cancelled,
        worker_failed,
        timed_out,
        every_tier,
        pending_cancelled,
    ]
    try:
        await asyncio.gather(*(flow() for flow in flows))
        await h.published(ev.TASK_FAILED, where=lambda e: e["data"]["reason"] == "timeout")
        await eventually(lambda: all_published(svc), what="the relay's last batch")
        await h.bus.drain()
        result.published = list(h.bus.published)
        result.dead_letters = [reason for _, reason in h.bus.dead_letters]
    finally:
        await svc.client.aclose()
        await lifespan.__aexit__(None, None, None)
    return result


def test_every_published_envelope_matches_the_contract(contract: Contract, run: Run) -> None:
    assert run.published
    problems = [p for msg in run.published for p in contract.check_published(msg)]
    assert problems == [], "\n".join(problems)


def test_the_run_published_every_kind_of_event(run: Run) -> None:
    seen = {m.routing_key for m in run.published}
    expected = {
        ev.TASK_CREATED,
        *(ev.TASK_READY_PREFIX + tier for tier in TIERS),
        ev.TASK_CANCELLED,
        ev.TASK_COMPLETED,
        ev.TASK_FAILED,
        *(
            ev.TASK_STATUS_PREFIX + s
            for s in (
                "pending",
                "running",
                "validating",
                "awaiting_review",
                "completed",
                "failed",
                "cancelled",
            )
        ),
        ev.REVIEW_COMPLETED,
    }
    assert expected <= seen, f"not published: {sorted(expected - seen)}"
    failures = [m.envelope["data"] for m in run.published if m.routing_key == ev.TASK_FAILED]
    assert {f["reason"] for f in failures} >= {"timeout", "rejected: still wrong", "rejected: wrong"}
    assert {type(f["error"]) for f in failures} == {str, dict}
    assert run.dead_letters == []


def test_published_events_that_loop_back_are_valid_consumed_events(contract: Contract, run: Run) -> None:
    """Our own task.failed reaches our queue too; it must satisfy the consumed schema."""
    consumed = [m for m in run.published if m.routing_key in ev.CONSUMED_EVENTS]
    assert consumed
    for m in consumed:
        pointer = contract.message_pointer(m.routing_key, "publish") + "/payload"
        assert contract.errors(pointer, m.envelope) == []
        validate_payload(parse_envelope(m.envelope))


def test_the_events_the_run_sent_are_valid_consumed_events(contract: Contract, run: Run) -> None:
    assert run.sent
    for exchange, key, envelope in run.sent:
        assert (exchange, key) in ev.CONSUMED_BINDINGS
        pointer = contract.message_pointer(key, "publish") + "/payload"
        assert contract.errors(pointer, envelope) == [], key


def _mutations(run: Run) -> list[tuple[str, OutboundMessage]]:
    def first(key: str) -> OutboundMessage:
        return next(m for m in run.published if m.routing_key == key)

    def with_data(m: OutboundMessage, **data: Any) -> OutboundMessage:
        env = copy.deepcopy(m.envelope)
        env["data"].update(data)
        return OutboundMessage(m.exchange, m.routing_key, env)

    created, status = first(ev.TASK_CREATED), first("task.status.running")
    ready = next(m for m in run.published if m.routing_key.startswith(ev.TASK_READY_PREFIX))
    renamed = copy.deepcopy(created.envelope) | {"type": "dats.task.exploded"}
    return [
        ("attempt as a string", with_data(status, attempt="1")),
        ("undocumented field", with_data(created, extra=1)),
        ("unknown tier value", with_data(ready, tier="medium")),
        ("null description", with_data(created, description=None)),
        ("undocumented event name", OutboundMessage(ev.TASK_EXCHANGE, "task.exploded", renamed)),
        ("undocumented tier", OutboundMessage(ev.TASK_EXCHANGE, "task.ready.medium", ready.envelope)),
        ("wrong exchange", OutboundMessage(ev.CASCADE_EXCHANGE, created.routing_key, created.envelope)),
        (
            "missing time",
            OutboundMessage(created.exchange, created.routing_key, {**created.envelope, "time": None}),
        ),
    ]


def test_the_check_rejects_a_wrong_type_or_an_undocumented_name(contract: Contract, run: Run) -> None:
    for what, msg in _mutations(run):
        assert contract.check_published(msg), f"{what} was not caught"


# -- consumed fixtures -------------------------------------------------------------------------
def _code_accepts(case: Case) -> str | None:
    """None if the service's parsing accepts the event, else its rejection."""
    try:
        name, _ = validate_payload(parse_envelope(case.envelope))
    except EventRejected as exc:
        return f"{exc.kind}: {exc.reason}"
    assert name == case.name
    return None


@pytest.mark.parametrize("case", VALID, ids=[c.id for c in VALID])
def test_valid_consumed_event_is_accepted_by_contract_and_code(contract: Contract, case: Case) -> None:
    pointer = contract.message_pointer(case.name, "publish") + "/payload"
    assert contract.errors(pointer, case.envelope) == []
    assert _code_accepts(case) is None


@pytest.mark.parametrize("case", INVALID, ids=[c.id for c in INVALID])
def test_invalid_consumed_event_is_rejected_by_contract_and_code(contract: Contract, case: Case) -> None:
    pointer = contract.message_pointer(case.name, "publish") + "/payload"
    assert contract.errors(pointer, case.envelope), "the contract accepts it"
    assert _code_accepts(case) is not None, "the code accepts it"
