"""Exporting the store to the legacy provenance directory: the layout ``legacy_import`` reads
(see domain/provenance.py: lossless, the file's own form of each field the store has not
changed since it was imported)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from orchestration_service.domain.provenance import export_checkpoint, export_record, export_taint_event
from orchestration_service.repositories.ports import Storage
from orchestration_service.services.provenance.legacy_files import CHECKPOINTS_FILE, TAINT_EVENTS_FILE
from orchestration_service.services.provenance.legacy_import import DEFAULT_BATCH, Progress


@dataclass(slots=True)
class ExportReport:
    records: int = 0
    taint_events: int = 0
    checkpoints: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"exported {self.records} records, {self.taint_events} taint events, "
            f"{self.checkpoints} checkpoints in {self.seconds:.1f} s"
        )


def _write(path: Path, doc: Any) -> None:
    """Files are written synchronously: the export is a batch job, not a server."""
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))


def _prepare(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)


async def export_directory(
    storage: Storage,
    directory: Path,
    *,
    project_id: str | None = None,
    batch_size: int = DEFAULT_BATCH,
    on_progress: Progress = lambda _done, _total: None,
) -> ExportReport:
    """Write the legacy layout of the store (or of one project) into ``directory``."""
    started = time.monotonic()
    report = ExportReport()
    _prepare(directory)
    async with storage.transaction(write=False) as uow:
        repo = uow.provenance_import
        total = await repo.count_records(project_id)
        on_progress(0, total)
        after: Any = None
        while rows := await repo.records_after(project_id, after, batch_size):
            for row in rows:
                doc = export_record(row)
                name = (
                    doc["id"] if isinstance(doc.get("id"), str) and "/" not in doc["id"] else str(row["id"])
                )
                _write(directory / f"{name}.json", doc)
            report.records += len(rows)
            on_progress(report.records, total)
            after = (rows[-1]["created_at"], rows[-1]["id"])
        events = [export_taint_event(r) for r in await repo.taint_events_in_order(project_id)]
        _write(directory / TAINT_EVENTS_FILE, events)
        report.taint_events = len(events)
        saved: dict[str, Any] = {}
        after = None
        while rows := await repo.checkpoints_after(project_id, after, batch_size):
            saved.update({r["id"]: export_checkpoint(r) for r in rows})
            after = (rows[-1]["created_at"], rows[-1]["id"])
        _write(directory / CHECKPOINTS_FILE, saved)
        report.checkpoints = len(saved)
    report.seconds = time.monotonic() - started
    return report
