"""Legacy provenance files <-> rows: records, taint events and checkpoints, parsed on import
and rendered back on export (see ``legacy_format`` for the lossless rule)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestration_service.domain.json_text import nul_path
from orchestration_service.domain.provenance.legacy_format import (
    _INT32,
    _INT64,
    _WIDTHS,
    CHECKPOINT_FIELDS,
    CHECKPOINT_TRIGGERS,
    LEGACY_KEY,
    RECORD_COLUMN_FIELDS,
    RECORD_FIELDS,
    RELATIONSHIPS,
    TAINT_ACTIONS,
    TAINT_EVENT_FIELDS,
    VERIFICATION_STATUSES,
    LegacyError,
    _confidence,
    _dict,
    _enum,
    _int,
    _list,
    _opt_str,
    _split_extra,
    _str,
    _uuid,
    _with_overrides,
    apply_overrides,
    format_timestamp,
    parse_timestamp,
)


# -- records ---------------------------------------------------------------------------------
@dataclass(slots=True)
class ParsedRecord:
    row: dict[str, Any]
    output_ids: list[str] = field(default_factory=list)
    # (artifact id, relationship) of each input: the edges to resolve
    input_refs: list[tuple[str, str]] = field(default_factory=list)


_KNOWN_RECORD_FIELDS = frozenset((*RECORD_FIELDS, *RECORD_COLUMN_FIELDS, LEGACY_KEY))


def parse_record(doc: Any, canonical: bytes | None = None) -> ParsedRecord:
    """A legacy record file's content -> a provenance_records row (raises LegacyError).
    ``canonical``: ``canonical_json(doc)``, when the caller has it (it spares encoding twice)."""
    if not isinstance(doc, dict):
        raise LegacyError(f"a record must be a JSON object, not {type(doc).__name__}")
    raw_id = doc.get("id")
    if raw_id is None or raw_id == "":
        raise LegacyError("the record has no id")
    record_id = _uuid(raw_id)
    if record_id is None:
        raise LegacyError(f"id {raw_id!r} is not a UUID")
    # JSON text escapes NUL (keys and strings alike): absent from the encoding, absent from doc.
    where = nul_path(doc) if canonical is None or b"\\u0000" in canonical else None
    if where is not None:
        raise LegacyError(f"{where}: NUL characters cannot be stored")
    for name in ("task_id", "project_id"):
        value = doc.get(name)
        if value is not None and not isinstance(value, str):
            raise LegacyError(f"{name} must be a string")
        if isinstance(value, str) and len(value) > 255:
            raise LegacyError(f"{name} is longer than 255 characters")

    execution = _dict(doc.get("execution"))
    verification = _dict(doc.get("verification"))
    metrics = _dict(doc.get("metrics"))
    taint = _dict(doc.get("taint")) or {}
    flat_template = _dict(doc.get("prompt_template"))

    outputs = _list(doc.get("outputs")) or []
    inputs = _list(doc.get("inputs"))
    consumed = _list(doc.get("inputs_consumed"))
    if inputs is None:
        inputs = [
            {"artifact_id": a, "relationship": "consumed", "version_at_consumption": ""}
            for a in consumed or []
            if isinstance(a, str) and a
        ]
    if consumed is None:
        consumed = [
            i["artifact_id"] for i in inputs if isinstance(i, dict) and isinstance(i.get("artifact_id"), str)
        ]

    model = _str((execution or {}).get("model")) or _str(doc.get("model_used"))
    worker = _str((execution or {}).get("worker_id")) or _str(doc.get("worker_id"))
    if execution is None:
        execution = {
            "model": _str(doc.get("model_used")),
            "worker_id": _str(doc.get("worker_id")),
            "prompt_template": dict(flat_template or {}),
            "parameters": {},
        }
    status = _enum((verification or {}).get("status"), VERIFICATION_STATUSES, "")
    if not status:
        status = _enum(doc.get("verification_status"), VERIFICATION_STATUSES, "pending")
    if verification is None:
        details = _dict(doc.get("verification_details")) or {}
        verification = {
            "status": status,
            "qa_profile": "",
            "qa_result_id": "",
            "verified_at": None,
            "verified_by": "",
            "details": {**details, "confidence": doc.get("confidence", details.get("confidence", 0.0))},
        }
    details = _dict(verification.get("details")) or {}
    confidence = details.get("confidence", doc.get("confidence"))
    if metrics is None:
        metrics = {
            "tokens_input": doc.get("tokens_input", 0),
            "tokens_output": doc.get("tokens_output", 0),
            "execution_time_ms": doc.get("execution_time_ms", 0),
        }

    def metric(name: str, limit: int = _INT32) -> int | None:
        value = metrics.get(name) if metrics and name in metrics else doc.get(name)
        return _int(value, limit)

    created = parse_timestamp(doc.get("created_at"))
    started = parse_timestamp(doc.get("started_at"))
    completed = parse_timestamp(doc.get("completed_at"))
    row: dict[str, Any] = {
        "id": record_id,
        "task_id": _str(doc.get("task_id")),
        "project_id": _str(doc.get("project_id")),
        "status": _opt_str(doc.get("status"), _WIDTHS["status"]) or "completed",
        "model_used": model[: _WIDTHS["model_used"]] or None,
        "worker_id": worker[: _WIDTHS["worker_id"]] or None,
        "tier": _opt_str(doc.get("tier"), _WIDTHS["tier"]),
        "domain": _opt_str(doc.get("domain"), _WIDTHS["domain"]),
        "created_at": created or completed or started or datetime(1970, 1, 1, tzinfo=UTC),
        "started_at": started,
        "completed_at": completed,
        "tokens_input": metric("tokens_input"),
        "tokens_output": metric("tokens_output"),
        "execution_time_ms": metric("execution_time_ms", _INT64),
        "confidence": _confidence(confidence),
        "verification_status": status,
        "is_tainted": taint.get("is_tainted") is True,
        "tainted_at": parse_timestamp(taint.get("tainted_at")),
        "tainted_reason": _opt_str(taint.get("tainted_reason")),
        "tainted_by": _opt_str(taint.get("tainted_by"), 255),
        "is_suspect": taint.get("is_suspect") is True,
        "suspect_since": parse_timestamp(taint.get("suspect_since")),
        "suspect_source": _opt_str(taint.get("suspect_source"), 255),
        "outputs": outputs,
        "inputs": inputs,
        "inputs_consumed": consumed,
        "execution": execution,
        "verification": verification,
        "metrics": metrics,
    }
    # (a set difference decides the usual case, no unknown field, in C)
    unknown = (
        {k: doc[k] for k in doc if k not in _KNOWN_RECORD_FIELDS} if doc.keys() - _KNOWN_RECORD_FIELDS else {}
    )
    _with_overrides(row, doc, unknown, render_record, canonical)
    return ParsedRecord(row, output_artifact_ids(outputs), input_references(inputs))


def output_artifact_ids(outputs: Any) -> list[str]:
    """Artifact ids a record produced, in order, without repeats (older outputs have none)."""
    ids = [
        o["artifact_id"]
        for o in outputs or []
        if isinstance(o, dict) and isinstance(o.get("artifact_id"), str) and o["artifact_id"]
    ]
    return [a for a in dict.fromkeys(ids) if len(a) <= 255]


def input_references(inputs: Any) -> list[tuple[str, str]]:
    """(artifact id, relationship) per input; unknown relationships count as consumed."""
    refs: dict[str, str] = {}
    for i in inputs or []:
        if not isinstance(i, dict):
            continue
        art = i.get("artifact_id")
        if isinstance(art, str) and art and len(art) <= 255:
            refs.setdefault(art, _enum(i.get("relationship"), RELATIONSHIPS, "consumed"))
    return list(refs.items())


def render_record(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A provenance_records row in the legacy layout: structured and flat fields, before
    the file overrides are applied (see ``export_record``)."""
    execution = dict(row["execution"] or {})
    verification = dict(row["verification"] or {})
    verification["status"] = row["verification_status"]
    template = execution.get("prompt_template")
    flat_template = (
        {k: template[k] for k in ("name", "version") if k in template} if isinstance(template, dict) else {}
    )
    inputs = row["inputs"] or []
    consumed = row["inputs_consumed"]
    if consumed is None:
        consumed = [i["artifact_id"] for i in inputs if isinstance(i, dict) and "artifact_id" in i]
    confidence = row["confidence"]
    doc: dict[str, Any] = {
        "id": str(row["id"]),
        "task_id": row["task_id"],
        "project_id": row["project_id"],
        "outputs": row["outputs"] or [],
        "inputs": inputs,
        "inputs_consumed": consumed,
        "execution": execution,
        "model_used": row["model_used"] or "",
        "worker_id": row["worker_id"] or "",
        "prompt_template": flat_template,
        "verification": verification,
        "confidence": float(confidence) if confidence is not None else 0.0,
        "verification_status": row["verification_status"],
        "verification_details": verification.get("details") or {},
        "taint": {
            "is_tainted": bool(row["is_tainted"]),
            "tainted_at": format_timestamp(row["tainted_at"]),
            "tainted_reason": row["tainted_reason"],
            "tainted_by": row["tainted_by"],
            "is_suspect": bool(row["is_suspect"]),
            "suspect_since": format_timestamp(row["suspect_since"]),
            "suspect_source": row["suspect_source"],
        },
        "created_at": format_timestamp(row["created_at"]),
        "started_at": format_timestamp(row["started_at"]),
        "completed_at": format_timestamp(row["completed_at"]),
        "metrics": row["metrics"] or {},
        "tokens_input": row["tokens_input"] or 0,
        "tokens_output": row["tokens_output"] or 0,
        "execution_time_ms": row["execution_time_ms"] or 0,
    }
    if row["status"] != "completed":
        doc["status"] = row["status"]
    for name in ("tier", "domain"):
        if row[name] is not None:
            doc[name] = row[name]
    unknown, _ = _split_extra(row["extra"])
    doc.update(unknown)
    return doc


def export_record(row: Mapping[Any, Any]) -> dict[str, Any]:
    """The legacy file of a record, as close to the imported file as the store's changes allow."""
    _, overrides = _split_extra(row["extra"])
    return apply_overrides(render_record(row), overrides)


# -- taint events ------------------------------------------------------------------------------
def parse_taint_event(
    doc: Any, project_of: Mapping[uuid.UUID, str] | None = None, position: int | None = None
) -> dict[str, Any]:
    """One entry of taint_events.json -> a taint_events row (``project_of``: record -> project;
    ``position``: its index in the file, which an export keeps)."""
    if not isinstance(doc, dict):
        raise LegacyError(f"a taint event must be an object, not {type(doc).__name__}")
    event_id = doc.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise LegacyError("the taint event has no id")
    if len(event_id) > 255:
        raise LegacyError("id is longer than 255 characters")
    where = nul_path(doc)
    if where is not None:
        raise LegacyError(f"{where}: NUL characters cannot be stored")
    record = _uuid(doc.get("provenance_id"))
    project = doc.get("project_id")
    if not isinstance(project, str) or len(project) > 255:
        project = (project_of or {}).get(record) if record else None
    row: dict[str, Any] = {
        "id": event_id,
        "timestamp": parse_timestamp(doc.get("timestamp")) or datetime(1970, 1, 1, tzinfo=UTC),
        "artifact_id": _str(doc.get("artifact_id"))[:255],
        "provenance_id": record,
        "reason": _str(doc.get("reason")),
        "source_artifact_id": _opt_str(doc.get("source_artifact_id"), 255),
        "source_provenance_id": _uuid(doc.get("source_provenance_id")),
        "cascade_depth": _int(doc.get("cascade_depth")) or 0,
        "cascade_id": _str(doc.get("cascade_id"))[:255],
        "action": _enum(doc.get("action"), TAINT_ACTIONS, "taint"),
        "project_id": project,
        "seq": position,
    }
    unknown = {k: v for k, v in doc.items() if k not in (*TAINT_EVENT_FIELDS, "project_id", LEGACY_KEY)}
    _with_overrides(row, doc, unknown, render_taint_event)
    return row


def render_taint_event(row: Mapping[Any, Any]) -> dict[str, Any]:
    doc = {
        "id": row["id"],
        "timestamp": format_timestamp(row["timestamp"]),
        "artifact_id": row["artifact_id"],
        "provenance_id": str(row["provenance_id"]) if row["provenance_id"] else None,
        "reason": row["reason"],
        "source_artifact_id": row["source_artifact_id"],
        "source_provenance_id": str(row["source_provenance_id"]) if row["source_provenance_id"] else None,
        "cascade_depth": row["cascade_depth"],
        "cascade_id": row["cascade_id"],
        "action": row["action"],
    }
    unknown, _ = _split_extra(row["extra"])
    doc.update(unknown)
    return doc


def export_taint_event(row: Mapping[Any, Any]) -> dict[str, Any]:
    _, overrides = _split_extra(row["extra"])
    return apply_overrides(render_taint_event(row), overrides)


# -- checkpoints -------------------------------------------------------------------------------
def parse_checkpoint(key: str, doc: Any) -> dict[str, Any]:
    """One value of checkpoints.json (keyed by checkpoint id) -> a checkpoints row."""
    if not isinstance(doc, dict):
        raise LegacyError(f"a checkpoint must be an object, not {type(doc).__name__}")
    if not key or len(key) > 255:
        raise LegacyError("the checkpoint id must be 1-255 characters")
    where = nul_path(doc)
    if where is not None or "\x00" in key:
        raise LegacyError(f"{where or 'id'}: NUL characters cannot be stored")
    project = doc.get("project_id")
    if not isinstance(project, str) or len(project) > 255:
        raise LegacyError("the checkpoint has no project_id")
    row: dict[str, Any] = {
        "id": key,
        "project_id": project,
        "created_at": parse_timestamp(doc.get("created_at")) or datetime(1970, 1, 1, tzinfo=UTC),
        "git_ref": _str(doc.get("git_ref")),
        "provenance_count": _int(doc.get("provenance_count"), _INT64) or 0,
        "artifact_count": _int(doc.get("artifact_count"), _INT64) or 0,
        "last_provenance_id": _str(doc.get("last_provenance_id"))[:255],
        "last_task_id": _str(doc.get("last_task_id"))[:255],
        "rag_state_ref": _str(doc.get("rag_state_ref")),
        "work_product_ref": _str(doc.get("work_product_ref")),
        "description": _str(doc.get("description")),
        "trigger": _enum(doc.get("trigger"), CHECKPOINT_TRIGGERS, "manual"),
        "is_valid": doc.get("is_valid") is not False,
        "invalidated_at": None,
        "invalidated_by": None,
    }
    unknown = {k: v for k, v in doc.items() if k not in (*CHECKPOINT_FIELDS, LEGACY_KEY)}
    _with_overrides(row, doc, unknown, render_checkpoint)
    return row


def render_checkpoint(row: Mapping[Any, Any]) -> dict[str, Any]:
    doc = {
        "id": row["id"],
        "project_id": row["project_id"],
        "created_at": format_timestamp(row["created_at"]),
        "git_ref": row["git_ref"],
        "provenance_count": row["provenance_count"],
        "artifact_count": row["artifact_count"],
        "last_provenance_id": row["last_provenance_id"],
        "last_task_id": row["last_task_id"],
        "rag_state_ref": row["rag_state_ref"],
        "work_product_ref": row["work_product_ref"],
        "description": row["description"],
        "trigger": row["trigger"],
        "is_valid": bool(row["is_valid"]),
    }
    unknown, _ = _split_extra(row["extra"])
    doc.update(unknown)
    return doc


def export_checkpoint(row: Mapping[Any, Any]) -> dict[str, Any]:
    _, overrides = _split_extra(row["extra"])
    return apply_overrides(render_checkpoint(row), overrides)
