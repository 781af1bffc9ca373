"""Hand-written consumed events: valid ones (the contract and the code both accept them) and
invalid ones (both reject them). ``tests/contract/test_asyncapi.py`` runs each through
``contracts/asyncapi.yaml`` and through the service's own parsing."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from tests.integration.test_event_lifecycle import cloud_event

TASK = "01937a5e-8c1d-7b2a-9f3e-4a5b6c7d8e9f"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
OUTPUT_SOURCE = "/worker-service"
QA_SOURCE = "/qa-service"
CASCADE_SOURCE = "/cascade-service"


@dataclass(frozen=True)
class Case:
    id: str
    name: str  # the event name, i.e. the routing key it arrives with
    envelope: dict[str, Any]


def _source(name: str) -> str:
    if name in ("task.validated", "task.rejected", "review.requested"):
        return QA_SOURCE
    if name == "rollback.requested":
        return CASCADE_SOURCE
    if name == "review.completed":
        return "/review-ui"
    return OUTPUT_SOURCE


def case(case_id: str, name: str, data: Any, **envelope: Any) -> Case:
    env = cloud_event(name, {}, source=_source(name), **envelope)
    env["data"] = data
    env["subject"] = data.get("task_id") if isinstance(data, dict) else None
    return Case(case_id, name, env)


def altered(base: Case, case_id: str, *, drop: tuple[str, ...] = (), **attrs: Any) -> Case:
    env = copy.deepcopy(base.envelope)
    for key in drop:
        env.pop(key, None)
    env.update(attrs)
    return Case(case_id, base.name, env)


# The example of /work/shared/reference/DATS.md ("Consumed payloads"), task id filled in.
DATS_OUTPUT_EXAMPLE = {
    "task_id": TASK,
    "worker_id": "worker-7",
    "model_used": "gemma3:12b",
    "tokens_input": 120,
    "tokens_output": 340,
    "execution_time_ms": 900,
    "artifacts": [{"id": "art-789", "type": "code", "path": "fibonacci.py"}],
    "output": {"content": "def fib(n): …"},
}
ART = {"id": "art-1", "type": "code", "path": "src/fib.py"}

OUTPUT = case("output-dats-reference-example", "task.output.created", DATS_OUTPUT_EXAMPLE)

VALID: list[Case] = [
    OUTPUT,
    case(
        "output-minimal-with-location",
        "task.output.created",
        {
            "task_id": TASK,
            "artifacts": [{"id": "art-2", "type": "document", "location": "s3://bucket/readme.md"}],
        },
    ),
    case("output-no-artifacts", "task.output.created", {"task_id": TASK, "artifacts": []}),
    case(
        "output-every-field-and-extras",
        "task.output.created",
        {
            "task_id": TASK,
            "artifacts": [
                {**ART, "checksum": "sha256:ab12", "size_bytes": 0, "language": "python"},
                {"id": "art-3", "type": "image", "path": "ui.png", "location": "s3://bucket/ui.png"},
            ],
            "worker_id": "worker-7",
            "model_used": "gemma3:12b",
            "tokens_input": 0,
            "tokens_output": 1,
            "execution_time_ms": 12,
            "started_at": "2026-11-24T10:00:00Z",
            "completed_at": "2026-11-24T10:00:00.5+01:00",
            "output": "def fib(n): ...",
            "inputs": [
                {"artifact_id": "art-0"},
                {"artifact_id": "art-00", "relationship": "derived", "version_at_consumption": "v3", "x": 1},
            ],
            "prompt_template": {"name": "codegen", "version": 2},
            "parameters": {"temperature": 0.2},
            "gpu": "a100",
        },
    ),
    case(
        "output-optional-fields-null",
        "task.output.created",
        {
            "task_id": TASK,
            "artifacts": [{"id": "art-4", "type": "code", "path": None, "location": "x", "checksum": None}],
            "worker_id": None,
            "model_used": None,
            "tokens_input": None,
            "started_at": None,
            "output": None,
            "inputs": None,
            "prompt_template": None,
        },
    ),
    case("validated-minimal", "task.validated", {"task_id": TASK}),
    case(
        "validated-every-field",
        "task.validated",
        {
            "task_id": TASK,
            "confidence": 0.93,
            "artifact_id": "art-1",
            "artifacts": [ART],
            "qa_profile": "consensus",
            "qa_result_id": "qa-42",
            "validators": [{"name": "pytest", "passed": True}],
            "details": {"coverage": 0.8},
            "reviewer": "bot",
        },
    ),
    case("validated-confidence-0", "task.validated", {"task_id": TASK, "confidence": 0}),
    case("validated-confidence-1", "task.validated", {"task_id": TASK, "confidence": 1}),
    case(
        "validated-optional-fields-null",
        "task.validated",
        {"task_id": TASK, "confidence": None, "artifacts": None, "details": None, "validators": None},
    ),
    case("rejected-minimal", "task.rejected", {"task_id": TASK}),
    case(
        "rejected-feedback-string",
        "task.rejected",
        {"task_id": TASK, "reason": "tests fail", "feedback": "n=0"},
    ),
    case(
        "rejected-feedback-object",
        "task.rejected",
        {"task_id": TASK, "feedback": {"failing": ["test_zero"]}, "qa_result_id": "qa-43"},
    ),
    case("failed-minimal", "task.failed", {"task_id": TASK}),
    case(
        "failed-error-string-retryable", "task.failed", {"task_id": TASK, "error": "OOM", "retryable": True}
    ),
    case(
        "failed-error-object-with-extras",
        "task.failed",
        {"task_id": TASK, "error": {"code": "E42"}, "retryable": False, "project_id": "p", "reason": "x"},
    ),
    case("rollback-targeted-artifact", "rollback.requested", {"artifact_id": "art-789", "reason": "tainted"}),
    case(
        "rollback-targeted-provenance",
        "rollback.requested",
        {"provenance_id": "01937a5f-0000-7000-8000-000000000001"},
    ),
    case(
        "rollback-project",
        "rollback.requested",
        {"project_id": "proj-123", "checkpoint_id": "cp-7", "cascade_id": "casc-1", "rollback_id": "rb-1"},
    ),
    case(
        "rollback-both-forms-and-extras",
        "rollback.requested",
        {"artifact_id": "a", "project_id": "p", "checkpoint_id": "c", "reason": None, "dry_run": True},
    ),
    altered(OUTPUT, "envelope-with-extensions", traceparent=TRACEPARENT, partitionkey="proj-123"),
    altered(OUTPUT, "envelope-without-optional-attributes", drop=("time", "subject", "datacontenttype")),
    altered(OUTPUT, "envelope-null-optional-attributes", time=None, subject=None, dataschema=None),
    case("review-requested-minimal", "review.requested", {"task_id": TASK}),
    case(
        "review-requested-full",
        "review.requested",
        {
            "task_id": TASK,
            "review_id": "qa-rev-1",
            "reason": "low confidence",
            "qa_result_id": "qa-9",
            "artifacts": [{"id": "art-1", "type": "code", "path": "fib.py"}],
            "checklist": {"tests": "pass"},
            "details": {"confidence": 0.4},
            "unknown": "kept",
        },
    ),
    case("review-completed-approved", "review.completed", {"task_id": TASK, "decision": "approved"}),
    case(
        "review-completed-changes",
        "review.completed",
        {
            "task_id": TASK,
            "decision": "changes_requested",
            "review_id": "qa-rev-1",
            "reviewer": "carol",
            "feedback": {"failing": ["test_zero"]},
            "decided_at": "2026-11-24T10:06:00Z",
        },
    ),
]


def _data(base: Case, case_id: str, **changes: Any) -> Case:
    env = copy.deepcopy(base.envelope)
    env["data"] = {**env["data"], **changes}
    return Case(case_id, base.name, env)


def _without(base: Case, case_id: str, key: str) -> Case:
    env = copy.deepcopy(base.envelope)
    del env["data"][key]
    return Case(case_id, base.name, env)


VALIDATED = case("validated", "task.validated", {"task_id": TASK})
REJECTED = case("rejected", "task.rejected", {"task_id": TASK})
FAILED = case("failed", "task.failed", {"task_id": TASK})

INVALID: list[Case] = [
    _without(OUTPUT, "output-missing-task-id", "task_id"),
    _without(OUTPUT, "output-missing-artifacts", "artifacts"),
    _data(OUTPUT, "output-artifacts-not-a-list", artifacts="nope"),
    _data(OUTPUT, "output-artifact-without-path-or-location", artifacts=[{"id": "a", "type": "code"}]),
    _data(OUTPUT, "output-artifact-empty-path", artifacts=[{"id": "a", "type": "code", "path": ""}]),
    _data(OUTPUT, "output-artifact-without-type", artifacts=[{"id": "a", "path": "x.py"}]),
    _data(OUTPUT, "output-artifact-negative-size", artifacts=[{**ART, "size_bytes": -1}]),
    _data(OUTPUT, "output-task-id-not-a-string", task_id=42),
    _data(OUTPUT, "output-task-id-empty", task_id=""),
    _data(OUTPUT, "output-task-id-too-long", task_id="t" * 256),
    _data(OUTPUT, "output-negative-tokens", tokens_input=-1),
    _data(OUTPUT, "output-output-a-list", output=["a"]),
    _data(OUTPUT, "output-input-without-artifact-id", inputs=[{"relationship": "consumed"}]),
    _data(VALIDATED, "validated-confidence-1.5", confidence=1.5),
    _data(VALIDATED, "validated-confidence-negative", confidence=-0.1),
    _data(VALIDATED, "validated-artifacts-not-a-list", artifacts={"id": "a"}),
    _without(VALIDATED, "validated-missing-task-id", "task_id"),
    _data(REJECTED, "rejected-feedback-a-list", feedback=["a"]),
    _without(REJECTED, "rejected-missing-task-id", "task_id"),
    _without(FAILED, "failed-missing-task-id", "task_id"),
    _data(FAILED, "failed-error-a-number", error=7),
    case("rollback-neither-form", "rollback.requested", {"reason": "tainted"}),
    case("rollback-project-without-checkpoint", "rollback.requested", {"project_id": "proj-123"}),
    case("rollback-empty-artifact-id", "rollback.requested", {"artifact_id": ""}),
    altered(OUTPUT, "envelope-specversion-0.3", specversion="0.3"),
    altered(OUTPUT, "envelope-missing-id", drop=("id",)),
    altered(OUTPUT, "envelope-missing-source", drop=("source",)),
    altered(OUTPUT, "envelope-empty-type", type=""),
    altered(OUTPUT, "envelope-data-a-list", data=[DATS_OUTPUT_EXAMPLE]),
    altered(OUTPUT, "envelope-without-data", drop=("data",)),
    case("review-requested-missing-task-id", "review.requested", {"reason": "x"}),
    case("review-requested-checklist-a-string", "review.requested", {"task_id": TASK, "checklist": "x"}),
    case("review-completed-missing-decision", "review.completed", {"task_id": TASK}),
    case("review-completed-unknown-decision", "review.completed", {"task_id": TASK, "decision": "maybe"}),
    case("review-completed-missing-task-id", "review.completed", {"decision": "approved"}),
]
