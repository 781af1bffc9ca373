"""Importing the legacy provenance directory into the store.

Import reads ``<id>.json`` records, ``taint_events.json`` and ``checkpoints.json``; each bad
file (or entry) is reported by name and reason and skipped. Records are written in batches
(one bulk insert per batch, one commit per batch); an id already stored is left alone when
the file says the same, and overwritten when it differs (the file wins). The artifact map and
the dependency graph are resolved at the end, set-based, from what every record of the run
produced and used (also the unchanged ones), so the order of the files does not matter and a
re-run repairs an interrupted one. Export: ``legacy_export``.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestration_service.domain.provenance import (
    LegacyError,
    ParsedRecord,
    canonical_json,
    chunks,
    export_checkpoint,
    export_record,
    export_taint_event,
    parse_checkpoint,
    parse_taint_event,
)
from orchestration_service.repositories.ports import Storage
from orchestration_service.repositories.provenance_import.port import (
    ImportedPart,
    LegacyRow,
    LegacyTable,
    ProvenanceImportRepository,
    RecordLinks,
)
from orchestration_service.services.provenance.legacy_files import (
    CHECKPOINTS_FILE,
    TAINT_EVENTS_FILE,
    RecordFile,
    load,
    read_record_files,
    record_files,
)

DEFAULT_BATCH = 1000

Progress = Callable[[int, int], None]  # (done, total) record files


@dataclass(slots=True)
class Counts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.unchanged


@dataclass(slots=True)
class ImportReport:
    records: Counts = field(default_factory=Counts)
    taint_events: Counts = field(default_factory=Counts)
    checkpoints: Counts = field(default_factory=Counts)
    artifacts_added: int = 0
    dependencies_added: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        r, t, c = self.records, self.taint_events, self.checkpoints
        return (
            f"records: {r.inserted} new, {r.updated} updated, {r.unchanged} unchanged; "
            f"taint events: {t.inserted} new, {t.updated} updated, {t.unchanged} unchanged; "
            f"checkpoints: {c.inserted} new, {c.updated} updated, {c.unchanged} unchanged; "
            f"{self.artifacts_added} artifacts and {self.dependencies_added} dependencies linked; "
            f"{len(self.failures)} failed; {self.seconds:.1f} s"
        )


def _same(stored: dict[str, Any], source: Any) -> bool:
    return canonical_json(stored) == canonical_json(source)


class _Reader:
    """The record files of each batch, read and parsed ahead and handed out in order, so that
    parsing (most of the import's own work) overlaps the database writing the batch before.
    On a thread by default (it runs while the writes wait on the database; measured 5-10 %
    faster than inline on the loaded 2-core machine, the writes' own encoding still sharing
    the interpreter). On worker processes when ``workers`` > 1 and there are
    several batches; those are spawned, so a script that imports a directory must guard its
    entry point (``if __name__ == "__main__":``)."""

    def __init__(self, batches: Sequence[Sequence[str]], workers: int) -> None:
        self.batches = batches
        self.pool = (
            ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            if workers > 1 and len(batches) > 2
            else None
        )
        self.ahead = workers + 1 if self.pool is not None else 2
        self.pending: deque[asyncio.Future[list[RecordFile]]] = deque()
        # With processes the first batch is read here, while the workers start.
        self.submitted = 1 if self.pool is not None else 0

    def _submit(self) -> None:
        while self.submitted < len(self.batches) and len(self.pending) < self.ahead:
            paths = self.batches[self.submitted]
            if self.pool is not None:
                future = asyncio.wrap_future(self.pool.submit(read_record_files, paths))
            else:
                future = asyncio.ensure_future(asyncio.to_thread(read_record_files, paths))
            self.pending.append(future)
            self.submitted += 1

    async def batch(self, i: int) -> list[RecordFile]:
        if i == 0 and self.pool is not None:
            self._submit()
            return read_record_files(self.batches[0])
        self._submit()
        files = await self.pending.popleft()
        self._submit()
        return files

    def close(self) -> None:
        for future in self.pending:
            future.cancel()
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


@contextmanager
def _rare_collections() -> Iterator[None]:
    """The cyclic garbage collector runs rarely while the import does (restored after).
    Parsing allocates a few hundred containers per record, so at the default threshold (700)
    the collector ran every few records and, over the run, rescanned everything still alive
    (the batch, the links of every record so far): 15-25 % of the import's CPU at 20,000
    records. The import makes no reference cycles per record; memory is what the batches
    and links take either way. Process-wide: the CLI runs nothing else meanwhile."""
    threshold = gc.get_threshold()
    gc.set_threshold(_GC_THRESHOLD, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)


_GC_THRESHOLD = 200_000  # allocations between young collections (Python's default: 700)


async def import_directory(
    storage: Storage,
    directory: Path,
    *,
    batch_size: int = DEFAULT_BATCH,
    on_progress: Progress = lambda _done, _total: None,
    workers: int = 1,
) -> ImportReport:
    """Import a legacy provenance directory (one unit of work per batch, then one to link).

    ``workers`` > 1 parses the files on that many processes: only worth it with idle cores (on
    the 2-core machine of the benchmarks, shared with the database, it was a third slower)."""
    with _rare_collections():
        return await _import_directory(storage, directory, batch_size, on_progress, workers)


async def _import_directory(
    storage: Storage, directory: Path, batch_size: int, on_progress: Progress, workers: int
) -> ImportReport:
    started = time.monotonic()
    report = ImportReport()
    files = record_files(directory)
    batches = list(chunks(files, batch_size))
    links: list[RecordLinks] = []
    # By the id's integer: a UUID hashes in Python code, its int in C (a few % of the run).
    seen: dict[int, str] = {}
    on_progress(0, len(files))
    done = 0
    reader = _Reader(batches, workers)
    try:
        for i, batch in enumerate(batches):
            read = await reader.batch(i)
            parsed: list[tuple[ParsedRecord, bytes]] = []
            for f in read:
                if f.record is None:
                    report.failures.append((f.name, f.error))
                    continue
                rid = f.record.row["id"]
                if (other := seen.setdefault(rid.int, f.name)) != f.name:  # names are unique
                    report.failures.append((f.name, f"duplicate id {rid} (also in {other})"))
                    continue
                parsed.append((f.record, f.canonical))
            if parsed:
                async with storage.transaction() as uow:
                    await _write_records(uow.provenance_import, parsed, report.records)
            # Every record of the run is linked (also unchanged ones): linking is idempotent
            # and repairs a run that stopped before it.
            links.extend(_links(p) for p, _ in parsed)
            done += len(batch)
            on_progress(done, len(files))
    finally:
        reader.close()
    # Statistics for the new rows (the graph queries plan from them), each part on its own
    # connection as soon as it is written, while the next part is written.
    refreshing = [asyncio.ensure_future(_refresh_statistics(storage, "records"))]
    try:
        async with storage.transaction() as uow:
            graph = await uow.provenance_import.link(links)
        report.artifacts_added, report.dependencies_added = graph.artifacts_added, graph.dependencies_added
        refreshing.append(asyncio.ensure_future(_refresh_statistics(storage, "graph")))
        events_path = directory / TAINT_EVENTS_FILE
        if events_path.exists():
            async with storage.transaction() as uow:
                await _import_taint_events(uow.provenance_import, events_path, report)
        checkpoints_path = directory / CHECKPOINTS_FILE
        if checkpoints_path.exists():
            async with storage.transaction() as uow:
                await _import_checkpoints(uow.provenance_import, checkpoints_path, report)
        refreshing.append(asyncio.ensure_future(_refresh_statistics(storage, "taint_events")))
        refreshing.append(asyncio.ensure_future(_refresh_statistics(storage, "checkpoints")))
        await asyncio.gather(*refreshing)
    finally:
        for task in refreshing:
            task.cancel()
        await asyncio.gather(*refreshing, return_exceptions=True)
    report.seconds = time.monotonic() - started
    return report


async def _refresh_statistics(storage: Storage, part: ImportedPart) -> None:
    async with storage.read() as uow:
        await uow.provenance_import.refresh_statistics(part)


def _links(record: ParsedRecord) -> RecordLinks:
    row = record.row
    return RecordLinks(
        record_id=row["id"],
        project_id=row["project_id"],
        created_at=row["created_at"],
        output_ids=tuple(record.output_ids),
        input_refs=tuple(record.input_refs),
    )


async def _write_records(
    repo: ProvenanceImportRepository, parsed: Sequence[tuple[ParsedRecord, bytes]], counts: Counts
) -> None:
    """``parsed``: each record with its file's canonical JSON (the comparison key)."""
    stored = await repo.stored("records", [p.row["id"] for p, _ in parsed])
    new: list[LegacyRow] = []
    changed: list[LegacyRow] = []
    for record, canonical in parsed:
        row = stored.get(record.row["id"])
        if row is None:
            new.append(record.row)
        elif canonical_json(export_record(row)) == canonical:
            counts.unchanged += 1
        else:
            changed.append(record.row)
    if new:
        await repo.insert("records", new)
        counts.inserted += len(new)
    if changed:
        await repo.update("records", changed)
        await repo.forget_links([r["id"] for r in changed])
        counts.updated += len(changed)


async def _upsert(
    repo: ProvenanceImportRepository,
    table: LegacyTable,
    rows: list[tuple[dict[str, Any], Any]],
    export: Callable[[LegacyRow], dict[str, Any]],
    counts: Counts,
) -> None:
    for batch in chunks(rows, DEFAULT_BATCH):
        existing = await repo.stored(table, [r["id"] for r, _ in batch])
        new = [r for r, _ in batch if r["id"] not in existing]
        changed = [r for r, doc in batch if r["id"] in existing and not _same(export(existing[r["id"]]), doc)]
        counts.unchanged += len(batch) - len(new) - len(changed)
        if new:
            await repo.insert(table, new)
            counts.inserted += len(new)
        if changed:
            await repo.update(table, changed)
            counts.updated += len(changed)


async def _import_taint_events(repo: ProvenanceImportRepository, path: Path, report: ImportReport) -> None:
    try:
        entries = load(path)
    except LegacyError as exc:
        report.failures.append((path.name, str(exc)))
        return
    if not isinstance(entries, list):
        report.failures.append((path.name, f"must be a JSON list, not {type(entries).__name__}"))
        return
    records = {
        u for e in entries if isinstance(e, dict) and (u := _maybe_uuid(e.get("provenance_id"))) is not None
    }
    project_of = await repo.projects_of(sorted(records))
    rows: list[tuple[dict[str, Any], Any]] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        try:
            row = parse_taint_event(entry, project_of, i)
        except LegacyError as exc:
            report.failures.append((f"{path.name}[{i}]", str(exc)))
            continue
        if row["id"] in seen:
            report.failures.append((f"{path.name}[{i}]", f"duplicate id {row['id']}"))
            continue
        seen.add(row["id"])
        rows.append((row, entry))
    await _upsert(repo, "taint_events", rows, export_taint_event, report.taint_events)


async def _import_checkpoints(repo: ProvenanceImportRepository, path: Path, report: ImportReport) -> None:
    try:
        entries = load(path)
    except LegacyError as exc:
        report.failures.append((path.name, str(exc)))
        return
    if not isinstance(entries, dict):
        report.failures.append(
            (path.name, f"must be a JSON object keyed by checkpoint id, not {type(entries).__name__}")
        )
        return
    rows: list[tuple[dict[str, Any], Any]] = []
    for key, entry in entries.items():
        try:
            rows.append((parse_checkpoint(key, entry), entry))
        except LegacyError as exc:
            report.failures.append((f"{path.name}[{key!r}]", str(exc)))
    await _upsert(repo, "checkpoints", rows, export_checkpoint, report.checkpoints)


def _maybe_uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None
