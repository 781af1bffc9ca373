"""Provenance rules that need no database: the legacy JSON layout (read and written
losslessly), the keyset cursor, and the project consistency rule.

Lossless import/export
----------------------
A legacy record holds a structured form and older flat copies side by side, and real files
are inconsistent (flat only, outputs without artifact ids, odd timestamps, unknown fields).
Import normalises each file into the queryable columns (``parse_record``); export renders a
row back into the legacy layout (``render_record``). Whatever the rendering would not
reproduce exactly is kept in ``extra["$legacy"]``: for each such top-level field, the
rendering at import time (``c``) and the file's value (``s``; an empty list when the field
was absent). Export puts the file's value back while the field still renders as it did at
import, i.e. unless this service has changed it since (a taint, a cleared suspect): then the
current state wins. Unknown top-level fields are kept in ``extra`` as they are.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from orchestration_service.domain.json_text import nul_path

LEGACY_KEY = "$legacy"

ARTIFACT_TYPES = ("code", "document", "config", "analysis", "architecture")
RELATIONSHIPS = ("consumed", "referenced")
VERIFICATION_STATUSES = ("pending", "passed", "failed", "human_approved", "tainted", "suspect")
TAINT_ACTIONS = ("taint", "suspect", "clear", "escalate")
CHECKPOINT_TRIGGERS = ("auto", "manual", "milestone")

RECORD_FIELDS = (
    "id",
    "task_id",
    "project_id",
    "outputs",
    "inputs",
    "inputs_consumed",
    "execution",
    "model_used",
    "worker_id",
    "prompt_template",
    "verification",
    "confidence",
    "verification_status",
    "verification_details",
    "taint",
    "created_at",
    "started_at",
    "completed_at",
    "metrics",
    "tokens_input",
    "tokens_output",
    "execution_time_ms",
)
# Not in the legacy layout, but columns of the store's schema: kept when a file has them.
RECORD_COLUMN_FIELDS = ("status", "tier", "domain")
TAINT_EVENT_FIELDS = (
    "id",
    "timestamp",
    "artifact_id",
    "provenance_id",
    "reason",
    "source_artifact_id",
    "source_provenance_id",
    "cascade_depth",
    "cascade_id",
    "action",
)
CHECKPOINT_FIELDS = (
    "id",
    "project_id",
    "created_at",
    "git_ref",
    "provenance_count",
    "artifact_count",
    "last_provenance_id",
    "last_task_id",
    "rag_state_ref",
    "work_product_ref",
    "description",
    "trigger",
    "is_valid",
)

_INT32 = 2**31 - 1
_INT64 = 2**63 - 1
# Column widths (PostgreSQL enforces them): longer values stay exact in the overrides.
_WIDTHS = {"model_used": 100, "worker_id": 100, "tier": 20, "domain": 50, "status": 50}


class LegacyError(ValueError):
    """A legacy file or entry that cannot be imported (the reason names what is wrong)."""


# -- small conversions ---------------------------------------------------------------------
def parse_timestamp(value: Any) -> datetime | None:
    """Naive ISO 8601 is UTC by convention; an aware value is converted to UTC."""
    if not isinstance(value, str) or not value:
        return None
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    try:
        return dt.astimezone(UTC)
    except OverflowError:
        return None


def format_timestamp(value: datetime | None) -> str | None:
    """The legacy form: naive ISO 8601 in UTC (microseconds only when not zero)."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat()


def _str(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _opt_str(value: Any, width: int | None = None) -> str | None:
    if not isinstance(value, str):
        return None
    return value[:width] if width is not None else value


def _int(value: Any, limit: int = _INT32) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and (value != value or not value.is_integer()):
        return None
    number = int(value)
    return number if -limit - 1 <= number <= limit else None


def _confidence(value: Any) -> Decimal | None:
    """NUMERIC(3, 2): two decimals, below 10 (the exact value stays in the overrides)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = Decimal(str(value)).quantize(Decimal("0.01"))
    except InvalidOperation:
        return None
    return number if abs(number) < 10 else None


def _dict(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _list(value: Any) -> list[Any] | None:
    return value if isinstance(value, list) else None


def _enum(value: Any, allowed: tuple[str, ...], default: str) -> str:
    return value if isinstance(value, str) and value in allowed else default


def _uuid(value: Any) -> uuid.UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def canonical_json(value: Any) -> bytes:
    """Type-exact comparison key (1, 1.0 and true differ; key order does not)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


# -- the override mechanism ----------------------------------------------------------------
def compute_overrides(canonical: Mapping[str, Any], source: Mapping[str, Any]) -> dict[str, Any]:
    """For each field the rendering does not reproduce: {c: [rendering], s: [file value]}."""
    out: dict[str, Any] = {}
    for key in dict.fromkeys([*canonical, *source]):
        c = [canonical[key]] if key in canonical else []
        s = [source[key]] if key in source else []
        if canonical_json(c) != canonical_json(s):
            out[key] = {"c": c, "s": s}
    return out


def apply_overrides(rendered: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The file's own value for each field the store has not changed since import."""
    if not overrides:
        return rendered
    out = dict(rendered)
    for key, entry in overrides.items():
        if not isinstance(entry, dict):
            continue
        now = [rendered[key]] if key in rendered else []
        if canonical_json(now) != canonical_json(entry.get("c", [])):
            continue  # changed by the store since import: its current state wins
        if entry.get("s"):
            out[key] = entry["s"][0]
        else:
            out.pop(key, None)
    return out


def _split_extra(extra: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    if not extra:
        return {}, None
    unknown = {k: v for k, v in extra.items() if k != LEGACY_KEY}
    overrides = extra.get(LEGACY_KEY)
    return unknown, overrides if isinstance(overrides, dict) else None


def _with_overrides(
    row: dict[str, Any],
    source: Mapping[str, Any],
    unknown: dict[str, Any],
    render: Callable[[Mapping[str, Any]], dict[str, Any]],
) -> None:
    row["extra"] = dict(unknown) or None
    overrides = compute_overrides(render(row), source)
    if overrides:
        row["extra"] = {**unknown, LEGACY_KEY: overrides}


# -- records ---------------------------------------------------------------------------------
@dataclass(slots=True)
class ParsedRecord:
    row: dict[str, Any]
    output_ids: list[str] = field(default_factory=list)
    # (artifact id, relationship) of each input: the edges to resolve
    input_refs: list[tuple[str, str]] = field(default_factory=list)


def parse_record(doc: Any) -> ParsedRecord:
    """A legacy record file's content -> a provenance_records row (raises LegacyError)."""
    if not isinstance(doc, dict):
        raise LegacyError(f"a record must be a JSON object, not {type(doc).__name__}")
    raw_id = doc.get("id")
    if raw_id is None or raw_id == "":
        raise LegacyError("the record has no id")
    record_id = _uuid(raw_id)
    if record_id is None:
        raise LegacyError(f"id {raw_id!r} is not a UUID")
    where = nul_path(doc)
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
    known = {*RECORD_FIELDS, *RECORD_COLUMN_FIELDS, LEGACY_KEY}
    unknown = {k: v for k, v in doc.items() if k not in known}
    _with_overrides(row, doc, unknown, render_record)
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


# -- keyset cursor -----------------------------------------------------------------------------
class BadCursor(ValueError):
    pass


def encode_cursor(created_at: datetime, row_id: Any) -> str:
    raw = orjson.dumps([created_at.astimezone(UTC).isoformat(), str(row_id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str, *, uuid_ids: bool = True) -> tuple[datetime, Any]:
    """(created_at, id) of the last row of the previous page."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        created, row_id = orjson.loads(raw)
        when = datetime.fromisoformat(created)
    except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError):
        raise BadCursor("not a cursor this service issued") from None
    if when.tzinfo is None or not isinstance(row_id, str):
        raise BadCursor("not a cursor this service issued")
    if not uuid_ids:
        return when, row_id
    try:
        return when, uuid.UUID(row_id)
    except ValueError:
        raise BadCursor("not a cursor this service issued") from None


# -- consistency -------------------------------------------------------------------------------
ROLLBACK_IMPACT_RATIO = 0.3
"""The Cascade Service's project impact ratio: at or above it, a project is rolled back."""


def recommended_action(total: int, affected: int, pending_revalidation: int) -> str:
    """``rollback`` when tainted or suspect records are at least 30 % of the project's
    records; ``pause`` when there is any (or any awaiting revalidation); else ``continue``."""
    if total > 0 and affected / total >= ROLLBACK_IMPACT_RATIO:
        return "rollback"
    if affected > 0 or pending_revalidation > 0:
        return "pause"
    return "continue"


def primary_artifact(outputs: Any, record_id: Any) -> str:
    """The artifact that names a record in events: its first output's id, else the record id."""
    ids = output_artifact_ids(outputs)
    return ids[0] if ids else str(record_id)


def artifacts_or_record(outputs: Any, record_id: Any) -> list[str]:
    """Every artifact a record produced; a record without artifact ids is named by its id."""
    return output_artifact_ids(outputs) or [str(record_id)]


def chunks(items: Iterable[Any], size: int) -> Iterable[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
