"""The legacy provenance layout: its vocabulary, value conversions, and the override
mechanism that makes import/export lossless.

A legacy record holds a structured form and older flat copies side by side, and real files
are inconsistent (flat only, outputs without artifact ids, odd timestamps, unknown fields).
Import normalises each file into the queryable columns (``legacy.parse_record``); export
renders a row back into the legacy layout (``legacy.render_record``). Whatever the rendering
would not reproduce exactly is kept in ``extra["$legacy"]``: for each such top-level field,
the rendering at import time (``c``) and the file's value (``s``; an empty list when the
field was absent). Export puts the file's value back while the field still renders as it did
at import, i.e. unless this service has changed it since (a taint, a cleared suspect): then
the current state wins. Unknown top-level fields are kept in ``extra`` as they are.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

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
    text = value.isoformat()
    if text.endswith("+00:00"):
        return text[:-6]  # already UTC (as the store keeps them): the same text, no conversion
    if value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None).isoformat()
    return text


def _str(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _opt_str(value: Any, width: int | None = None) -> str | None:
    if not isinstance(value, str):
        return None
    return value[:width] if width is not None else value


# A tuple, not ``int | float``: that builds a union object on every call (the import's
# hottest conversions run a few times per record).
_NUMBERS = (int, float)


def _int(value: Any, limit: int = _INT32) -> int | None:
    if isinstance(value, bool) or not isinstance(value, _NUMBERS):
        return None
    if isinstance(value, float) and (value != value or not value.is_integer()):
        return None
    number = int(value)
    return number if -limit - 1 <= number <= limit else None


def _confidence(value: Any) -> Decimal | None:
    """NUMERIC(3, 2): two decimals, below 10 (the exact value stays in the overrides)."""
    if isinstance(value, bool) or not isinstance(value, _NUMBERS):
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


def same_json(a: Any, b: Any) -> bool:
    """``canonical_json([a]) == canonical_json([b])``, without encoding when both are the same
    type of string, null or boolean (most fields): equal such values encode alike, unequal
    ones differently. Numbers and containers are encoded (NaN encodes as null, 1 == 1.0)."""
    kind = type(a)
    if kind is type(b) and (kind is str or a is None or kind is bool):
        return bool(a == b)
    return canonical_json([a]) == canonical_json([b])


# -- the override mechanism ----------------------------------------------------------------
def compute_overrides(canonical: Mapping[str, Any], source: Mapping[str, Any]) -> dict[str, Any]:
    """For each field the rendering does not reproduce: {c: [rendering], s: [file value]}."""
    out: dict[str, Any] = {}
    for key in dict.fromkeys([*canonical, *source]):
        if key in canonical and key in source and same_json(canonical[key], source[key]):
            continue
        c = [canonical[key]] if key in canonical else []
        s = [source[key]] if key in source else []
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
    source_canonical: bytes | None = None,
) -> None:
    """``source_canonical``: ``canonical_json(source)`` when the caller has it already."""
    row["extra"] = dict(unknown) or None
    rendered = render(row)
    # Most files render back exactly: one comparison of the whole document (equal sorted
    # encodings mean every field is equal) spares the field-by-field one.
    if canonical_json(rendered) == (source_canonical or canonical_json(source)):
        return
    overrides = compute_overrides(rendered, source)
    if overrides:
        row["extra"] = {**unknown, LEGACY_KEY: overrides}
