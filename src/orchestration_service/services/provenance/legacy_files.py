"""Reading the legacy provenance directory: which files are records, and each record file
read and parsed. Plain functions of the files, light to import: the import runs them in
worker processes (``legacy_import``), which import this module alone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from orchestration_service.domain.provenance import LegacyError, ParsedRecord, canonical_json, parse_record

TAINT_EVENTS_FILE = "taint_events.json"
CHECKPOINTS_FILE = "checkpoints.json"
SPECIAL_FILES = (TAINT_EVENTS_FILE, CHECKPOINTS_FILE)


def record_files(directory: Path) -> list[Path]:
    """Every ``*.json`` of the directory but the two special files is a record."""
    return sorted(
        p for p in directory.iterdir() if p.suffix == ".json" and p.is_file() and p.name not in SPECIAL_FILES
    )


def load(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise LegacyError(f"not JSON: {exc}") from None
    except OSError as exc:
        raise LegacyError(f"cannot read: {exc.strerror or exc}") from None


@dataclass(slots=True)
class RecordFile:
    """One record file, read and parsed, or why it could not be."""

    name: str
    record: ParsedRecord | None = None
    # The file's content as canonical JSON: what a stored record is compared with (computed
    # here, on the worker, and smaller to send back than the document).
    canonical: bytes = b""
    error: str = ""


def read_record_files(paths: Sequence[Path]) -> list[RecordFile]:
    out: list[RecordFile] = []
    for path in paths:
        try:
            doc = load(path)
            out.append(RecordFile(path.name, parse_record(doc), canonical_json(doc)))
        except LegacyError as exc:
            out.append(RecordFile(path.name, error=str(exc)))
    return out
