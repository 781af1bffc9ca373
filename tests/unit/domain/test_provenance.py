"""Provenance rules without a database: legacy parsing and lossless rendering, the keyset
cursor, and the consistency rule."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from orchestration_service.domain.provenance import (
    LEGACY_KEY,
    BadCursor,
    LegacyError,
    apply_overrides,
    canonical_json,
    compute_overrides,
    decode_cursor,
    encode_cursor,
    export_checkpoint,
    export_record,
    export_taint_event,
    format_timestamp,
    input_references,
    parse_checkpoint,
    parse_record,
    parse_taint_event,
    parse_timestamp,
    recommended_action,
)

RID = "0b7e9f6e-3c1a-4a8e-9d4b-2f1e5a6b7c8d"


def stored(row: dict[str, Any]) -> dict[str, Any]:
    """What the database gives back: the same row (types already column types)."""
    return dict(row)


@pytest.mark.parametrize(
    ("total", "affected", "pending", "action"),
    [
        (0, 0, 0, "continue"),
        (10, 0, 0, "continue"),
        (10, 0, 1, "pause"),
        (10, 1, 0, "pause"),
        (10, 2, 2, "pause"),
        (10, 3, 0, "rollback"),
        (100, 29, 29, "pause"),
        (100, 30, 0, "rollback"),
        (1, 1, 0, "rollback"),
    ],
)
def test_recommended_action(total: int, affected: int, pending: int, action: str) -> None:
    assert recommended_action(total, affected, pending) == action


def test_flat_only_record_fills_the_structured_columns() -> None:
    doc = {
        "id": RID,
        "task_id": "t-1",
        "project_id": "p",
        "outputs": [{"type": "code", "location": "a.py"}],
        "inputs_consumed": ["art-1", "art-2", "art-1"],
        "model_used": "phi3",
        "worker_id": "w-1",
        "tokens_input": 5,
        "tokens_output": 6,
        "execution_time_ms": 7,
        "confidence": 0.5,
        "verification_status": "failed",
        "created_at": "2026-01-09T18:00:00",
    }
    parsed = parse_record(doc)
    row = parsed.row
    assert row["id"] == uuid.UUID(RID) and row["model_used"] == "phi3" and row["worker_id"] == "w-1"
    assert (row["tokens_input"], row["tokens_output"], row["execution_time_ms"]) == (5, 6, 7)
    assert row["confidence"] == Decimal("0.50") and row["verification_status"] == "failed"
    assert row["created_at"] == datetime(2026, 1, 9, 18, tzinfo=UTC) and row["started_at"] is None
    assert row["inputs"][0] == {
        "artifact_id": "art-1",
        "relationship": "consumed",
        "version_at_consumption": "",
    }
    assert parsed.output_ids == [] and parsed.input_refs == [("art-1", "consumed"), ("art-2", "consumed")]
    assert export_record(stored(row)) == doc


def test_structured_form_wins_and_disagreeing_flat_copies_survive() -> None:
    doc = {
        "id": RID,
        "task_id": "t",
        "project_id": "p",
        "execution": {"model": "new", "worker_id": "w"},
        "model_used": "old",
        "verification": {"status": "passed", "details": {"confidence": 0.91}},
        "verification_status": "pending",
        "confidence": 0.12345,
        "metrics": {"tokens_input": 1},
        "tokens_input": 99,
        "surprise": {"keep": ["me", 1.5]},
    }
    row = parse_record(doc).row
    assert row["model_used"] == "new" and row["verification_status"] == "passed"
    assert row["confidence"] == Decimal("0.91") and row["tokens_input"] == 1
    assert row["extra"]["surprise"] == {"keep": ["me", 1.5]} and LEGACY_KEY in row["extra"]
    assert export_record(stored(row)) == doc


def test_a_change_by_the_store_wins_over_the_file() -> None:
    doc = {"id": RID, "task_id": "t", "project_id": "p", "verification_status": "passed", "taint": {"x": 1}}
    row = parse_record(doc).row
    row.update(is_tainted=True, tainted_reason="bad", verification_status="tainted")
    out = export_record(stored(row))
    assert out["verification_status"] == "tainted" and out["taint"]["is_tainted"] is True
    assert out["taint"]["tainted_reason"] == "bad" and "x" not in out["taint"]
    assert out["id"] == RID and out["task_id"] == "t"


def test_unknown_enums_fall_back_and_odd_values_stay_exact() -> None:
    doc = {
        "id": RID.upper(),
        "inputs": [{"artifact_id": "a", "relationship": "inspired"}, "junk", {"artifact_id": ""}],
        "verification_status": "weird",
        "confidence": 12.5,
        "tokens_input": 2**40,
        "created_at": "not a time",
        "model_used": "m" * 300,
    }
    row = parse_record(doc).row
    assert (
        row["verification_status"] == "pending" and row["confidence"] is None and row["tokens_input"] is None
    )
    assert row["created_at"] == datetime(1970, 1, 1, tzinfo=UTC) and len(row["model_used"]) == 100
    assert input_references(row["inputs"]) == [("a", "consumed")]
    assert export_record(stored(row)) == doc


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ([1, 2], "a record must be a JSON object, not list"),
        ({"task_id": "t"}, "the record has no id"),
        ({"id": "nope"}, "id 'nope' is not a UUID"),
        ({"id": RID, "task_id": 5}, "task_id must be a string"),
        ({"id": RID, "project_id": "p" * 256}, "project_id is longer than 255 characters"),
        ({"id": RID, "notes": "a\x00b"}, "notes: NUL characters cannot be stored"),
    ],
)
def test_unusable_records_are_refused_with_a_reason(doc: Any, reason: str) -> None:
    with pytest.raises(LegacyError) as exc:
        parse_record(doc)
    assert str(exc.value) == reason


def test_taint_events_and_checkpoints_round_trip() -> None:
    event = {
        "id": "e1",
        "timestamp": "2026-01-10T10:00:00.250000",
        "artifact_id": "a",
        "provenance_id": RID,
        "reason": "r",
        "source_artifact_id": None,
        "source_provenance_id": None,
        "cascade_depth": 0,
        "cascade_id": "c",
        "action": "escalate",
        "by": "ops",
    }
    row = parse_taint_event(event, {uuid.UUID(RID): "proj"}, 3)
    assert row["project_id"] == "proj" and row["seq"] == 3 and row["action"] == "escalate"
    assert export_taint_event(row) == event
    with pytest.raises(LegacyError):
        parse_taint_event({"timestamp": "x"})
    checkpoint = {"project_id": "p", "trigger": "sometimes", "is_valid": False, "provenance_count": 3}
    cp = parse_checkpoint("cp-1", checkpoint)
    assert cp["id"] == "cp-1" and cp["trigger"] == "manual" and cp["is_valid"] is False
    assert export_checkpoint(cp) == checkpoint
    with pytest.raises(LegacyError):
        parse_checkpoint("cp-2", {"trigger": "auto"})


def test_overrides_are_type_exact() -> None:
    canonical = {"a": 1, "b": True, "c": [1, 2]}
    source = {"a": 1.0, "b": True, "d": None}
    overrides = compute_overrides(canonical, source)
    assert set(overrides) == {"a", "c", "d"}
    assert apply_overrides(canonical, overrides) == source
    assert apply_overrides({**canonical, "a": 2}, overrides) == {"a": 2, "b": True, "d": None}


_VALUES: list[Any] = [None, True, False, 0, 1, 1.0, 0.5, float("nan"), "", "a", "1", [], [1], {}, {"a": 1}]


@pytest.mark.parametrize("a", _VALUES)
def test_overrides_compare_as_canonical_json(a: Any) -> None:
    """The override check skips encoding for strings, nulls and booleans: it still decides
    exactly as comparing canonical JSON does (1 and 1.0 and true differ, NaN encodes as null)."""
    for b in _VALUES:
        differs = canonical_json([a]) != canonical_json([b])
        assert ("k" in compute_overrides({"k": a}, {"k": b})) is differs, (a, b)


def test_timestamps_are_naive_utc_iso() -> None:
    assert parse_timestamp("2026-01-09T18:00:00") == datetime(2026, 1, 9, 18, tzinfo=UTC)
    assert parse_timestamp("2026-01-09T19:00:00+01:00") == datetime(2026, 1, 9, 18, tzinfo=UTC)
    assert parse_timestamp("2026-01-09T18:00:00Z") == datetime(2026, 1, 9, 18, tzinfo=UTC)
    assert parse_timestamp(None) is None and parse_timestamp("") is None and parse_timestamp(5) is None
    assert format_timestamp(datetime(2026, 1, 9, 18, 0, 0, 5, tzinfo=UTC)) == "2026-01-09T18:00:00.000005"
    assert format_timestamp(datetime(2026, 1, 9, 18, tzinfo=UTC)) == "2026-01-09T18:00:00"


def test_cursor_round_trip_and_rejects_garbage() -> None:
    when = datetime(2026, 1, 9, 18, 0, 0, 123456, tzinfo=UTC)
    rid = uuid.uuid4()
    assert decode_cursor(encode_cursor(when, rid)) == (when, rid)
    assert decode_cursor(encode_cursor(when, "te-1"), uuid_ids=False) == (when, "te-1")
    for bad in ("", "!!!", "bm9wZQ", encode_cursor(when, "not-a-uuid")):
        with pytest.raises(BadCursor):
            decode_cursor(bad)
