"""Moving the legacy provenance directory in and out of the database.

Import reads ``<id>.json`` records, ``taint_events.json`` and ``checkpoints.json``; each bad
file (or entry) is reported by name and reason and skipped. Records are written in batches
(one multi-row INSERT per batch, one commit per batch); an id already stored is left alone
when the file says the same, and overwritten when it differs (the file wins). The artifact
map and the dependency graph are resolved at the end with two set-based statements over
staging tables, so the order of the files does not matter and a re-run repairs an
interrupted one. Export writes the same layout back (see domain/provenance.py: lossless).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestration_service.db.tables import (
    artifact_dependencies,
    checkpoints,
    provenance_artifacts,
    provenance_records,
    provenance_unresolved_inputs,
    taint_events,
)
from orchestration_service.domain.provenance import (
    LegacyError,
    ParsedRecord,
    canonical_json,
    chunks,
    export_checkpoint,
    export_record,
    export_taint_event,
    parse_checkpoint,
    parse_record,
    parse_taint_event,
)
from orchestration_service.repositories.provenance import insert_ignoring_conflicts

TAINT_EVENTS_FILE = "taint_events.json"
CHECKPOINTS_FILE = "checkpoints.json"
SPECIAL_FILES = (TAINT_EVENTS_FILE, CHECKPOINTS_FILE)
DEFAULT_BATCH = 1000

pr = provenance_records

# Staging (temporary, per connection): what each imported record produced and used.
_staging = sa.MetaData()
stage_outputs = sa.Table(
    "provenance_import_outputs",
    _staging,
    sa.Column("record_id", sa.Uuid(), nullable=False),
    sa.Column("project_id", sa.String(255), nullable=False),
    sa.Column("artifact_id", sa.String(255), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    prefixes=["TEMPORARY"],
)
stage_inputs = sa.Table(
    "provenance_import_inputs",
    _staging,
    sa.Column("record_id", sa.Uuid(), nullable=False),
    sa.Column("project_id", sa.String(255), nullable=False),
    sa.Column("artifact_id", sa.String(255), nullable=False),
    sa.Column("relationship", sa.String(16), nullable=False),
    prefixes=["TEMPORARY"],
)


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


Progress = Callable[[int, int], None]  # (done, total) record files


def record_files(directory: Path) -> list[Path]:
    """Every ``*.json`` of the directory but the two special files is a record."""
    return sorted(
        p for p in directory.iterdir() if p.suffix == ".json" and p.is_file() and p.name not in SPECIAL_FILES
    )


def _load(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise LegacyError(f"not JSON: {exc}") from None
    except OSError as exc:
        raise LegacyError(f"cannot read: {exc.strerror or exc}") from None


def _same(stored: dict[str, Any], source: Any) -> bool:
    return canonical_json(stored) == canonical_json(source)


def _update(table: sa.Table, key: str) -> Any:
    """UPDATE table SET every column = :column WHERE key = :b_key (for executemany)."""
    return (
        table.update()
        .where(table.c[key] == sa.bindparam(f"b_{key}"))
        .values({c.name: sa.bindparam(c.name) for c in table.columns if c.name != key})
    )


async def import_directory(
    conn: AsyncConnection,
    directory: Path,
    *,
    batch_size: int = DEFAULT_BATCH,
    on_progress: Progress = lambda _done, _total: None,
) -> ImportReport:
    """Import a legacy provenance directory (``conn``: not in a transaction)."""
    started = time.monotonic()
    report = ImportReport()
    files = record_files(directory)
    if conn.dialect.name == "sqlite":
        # Take the write lock up front: a running service writes too, and a read lock
        # upgraded mid-transaction fails at once instead of waiting.
        conn = await conn.execution_options(sqlite_begin="IMMEDIATE")
    async with conn.begin():
        await conn.run_sync(lambda sync: _staging.create_all(sync))
    try:
        seen: dict[uuid.UUID, str] = {}
        on_progress(0, len(files))
        done = 0
        for batch in chunks(files, batch_size):
            parsed: list[tuple[ParsedRecord, Any]] = []
            for path in batch:
                try:
                    doc = _load(path)
                    record = parse_record(doc)
                except LegacyError as exc:
                    report.failures.append((path.name, str(exc)))
                    continue
                rid = record.row["id"]
                if rid in seen:
                    report.failures.append((path.name, f"duplicate id {rid} (also in {seen[rid]})"))
                    continue
                seen[rid] = path.name
                parsed.append((record, doc))
            async with conn.begin():
                await _write_records(conn, parsed, report.records)
            done += len(batch)
            on_progress(done, len(files))
        async with conn.begin():
            await _resolve_graph(conn, report)
        events_path = directory / TAINT_EVENTS_FILE
        if events_path.exists():
            async with conn.begin():
                await _import_taint_events(conn, events_path, report)
        checkpoints_path = directory / CHECKPOINTS_FILE
        if checkpoints_path.exists():
            async with conn.begin():
                await _import_checkpoints(conn, checkpoints_path, report)
    finally:
        if conn.in_transaction():
            await conn.rollback()
        async with conn.begin():
            await conn.run_sync(lambda sync: _staging.drop_all(sync))
    await _refresh_statistics(conn)
    report.seconds = time.monotonic() - started
    return report


async def _refresh_statistics(conn: AsyncConnection) -> None:
    """Planner statistics for the new rows (the graph queries plan from them); on PostgreSQL
    also the visibility map, so counts and graph walks read the indexes alone."""
    if conn.dialect.name != "postgresql":
        async with conn.begin():
            await conn.exec_driver_sql("ANALYZE")
        return
    original = await conn.get_isolation_level()
    await conn.rollback()
    await conn.execution_options(isolation_level="AUTOCOMMIT")  # VACUUM runs outside a transaction
    try:
        for table in (
            pr,
            provenance_artifacts,
            artifact_dependencies,
            provenance_unresolved_inputs,
            taint_events,
            checkpoints,
        ):
            await conn.exec_driver_sql(f"VACUUM (ANALYZE) {table.name}")
    finally:
        await conn.rollback()
        await conn.execution_options(isolation_level=original)


async def _write_records(
    conn: AsyncConnection, parsed: Sequence[tuple[ParsedRecord, Any]], counts: Counts
) -> None:
    if not parsed:
        return
    ids = [p.row["id"] for p, _ in parsed]
    existing = {r["id"]: r for r in (await conn.execute(sa.select(pr).where(pr.c.id.in_(ids)))).mappings()}
    new: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    for record, doc in parsed:
        stored = existing.get(record.row["id"])
        if stored is None:
            new.append(record.row)
        elif _same(export_record(stored), doc):
            counts.unchanged += 1
        else:
            changed.append(record.row)
    if new:
        await conn.execute(pr.insert(), new)
        counts.inserted += len(new)
    if changed:
        changed_ids = [r["id"] for r in changed]
        await conn.execute(_update(pr, "id"), [{**r, "b_id": r["id"]} for r in changed])
        await conn.execute(
            artifact_dependencies.delete().where(artifact_dependencies.c.artifact_id.in_(changed_ids))
        )
        await conn.execute(
            provenance_artifacts.delete().where(provenance_artifacts.c.provenance_id.in_(changed_ids))
        )
        await conn.execute(
            provenance_unresolved_inputs.delete().where(
                provenance_unresolved_inputs.c.record_id.in_(changed_ids)
            )
        )
        counts.updated += len(changed)
    # Every record of the run is staged (also unchanged ones): resolving is idempotent and
    # repairs a run that stopped before it.
    outputs = [
        {
            "record_id": p.row["id"],
            "project_id": p.row["project_id"],
            "artifact_id": a,
            "created_at": p.row["created_at"],
        }
        for p, _ in parsed
        for a in p.output_ids
    ]
    inputs = [
        {"record_id": p.row["id"], "project_id": p.row["project_id"], "artifact_id": a, "relationship": rel}
        for p, _ in parsed
        for a, rel in p.input_refs
    ]
    if outputs:
        await conn.execute(stage_outputs.insert(), outputs)
    if inputs:
        await conn.execute(stage_inputs.insert(), inputs)


async def _resolve_graph(conn: AsyncConnection, report: ImportReport) -> None:
    """Artifact -> producing record (per project, the earliest producer of an id keeps it),
    then the dependency edges: an input resolves to the record of its own project that
    produced that artifact (an artifact id is its project's)."""
    so, si = stage_outputs, stage_inputs
    ranked = sa.select(
        so.c.project_id,
        so.c.artifact_id,
        so.c.record_id,
        sa.func.row_number()
        .over(partition_by=(so.c.project_id, so.c.artifact_id), order_by=(so.c.created_at, so.c.record_id))
        .label("rank"),
    ).subquery()
    first = sa.select(ranked.c.project_id, ranked.c.artifact_id, ranked.c.record_id).where(ranked.c.rank == 1)
    result = await conn.execute(
        insert_ignoring_conflicts(conn, provenance_artifacts).from_select(
            ["project_id", "artifact_id", "provenance_id"], first
        )
    )
    report.artifacts_added = max(int(result.rowcount), 0)
    pa = provenance_artifacts
    same = sa.and_(pa.c.project_id == si.c.project_id, pa.c.artifact_id == si.c.artifact_id)
    edges = (
        sa.select(si.c.record_id, pa.c.provenance_id, si.c.relationship, si.c.artifact_id)
        .select_from(si.join(pa, same))
        .where(pa.c.provenance_id != si.c.record_id)
    )
    result = await conn.execute(
        insert_ignoring_conflicts(conn, artifact_dependencies).from_select(
            ["artifact_id", "depends_on", "dependency_type", "via_artifact_id"], edges
        )
    )
    report.dependencies_added = max(int(result.rowcount), 0)
    # Inputs nothing of their project produced are kept (orphaned artifacts); those an earlier
    # run or the service left unresolved and this run produced become edges now.
    u = provenance_unresolved_inputs
    await conn.execute(
        insert_ignoring_conflicts(conn, u).from_select(
            ["record_id", "project_id", "artifact_id", "relationship"],
            sa.select(si.c.record_id, si.c.project_id, si.c.artifact_id, si.c.relationship).where(
                ~sa.exists().where(same)
            ),
        )
    )
    waiting = sa.and_(pa.c.project_id == u.c.project_id, pa.c.artifact_id == u.c.artifact_id)
    late = (
        sa.select(u.c.record_id, pa.c.provenance_id, u.c.relationship, u.c.artifact_id)
        .select_from(u.join(pa, waiting))
        .where(pa.c.provenance_id != u.c.record_id)
    )
    result = await conn.execute(
        insert_ignoring_conflicts(conn, artifact_dependencies).from_select(
            ["artifact_id", "depends_on", "dependency_type", "via_artifact_id"], late
        )
    )
    report.dependencies_added += max(int(result.rowcount), 0)
    await conn.execute(u.delete().where(sa.exists().where(waiting)))


async def _upsert(
    conn: AsyncConnection,
    table: sa.Table,
    rows: list[tuple[dict[str, Any], Any]],
    export: Callable[[RowMapping], dict[str, Any]],
    counts: Counts,
) -> None:
    for batch in chunks(rows, DEFAULT_BATCH):
        ids = [r["id"] for r, _ in batch]
        existing = {
            r["id"]: r for r in (await conn.execute(sa.select(table).where(table.c.id.in_(ids)))).mappings()
        }
        new = [r for r, _ in batch if r["id"] not in existing]
        changed = [r for r, doc in batch if r["id"] in existing and not _same(export(existing[r["id"]]), doc)]
        counts.unchanged += len(batch) - len(new) - len(changed)
        if new:
            await conn.execute(table.insert(), new)
            counts.inserted += len(new)
        if changed:
            await conn.execute(_update(table, "id"), [{**r, "b_id": r["id"]} for r in changed])
            counts.updated += len(changed)


async def _import_taint_events(conn: AsyncConnection, path: Path, report: ImportReport) -> None:
    try:
        entries = _load(path)
    except LegacyError as exc:
        report.failures.append((path.name, str(exc)))
        return
    if not isinstance(entries, list):
        report.failures.append((path.name, f"must be a JSON list, not {type(entries).__name__}"))
        return
    records = {
        u for e in entries if isinstance(e, dict) and (u := _maybe_uuid(e.get("provenance_id"))) is not None
    }
    project_of: dict[uuid.UUID, str] = {}
    for batch in chunks(records, DEFAULT_BATCH):
        stmt = sa.select(pr.c.id, pr.c.project_id).where(pr.c.id.in_(batch))
        project_of.update({row[0]: row[1] for row in await conn.execute(stmt)})
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
    await _upsert(conn, taint_events, rows, export_taint_event, report.taint_events)


async def _import_checkpoints(conn: AsyncConnection, path: Path, report: ImportReport) -> None:
    try:
        entries = _load(path)
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
    await _upsert(conn, checkpoints, rows, export_checkpoint, report.checkpoints)


def _maybe_uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None


# -- export ------------------------------------------------------------------------------------
def _write(path: Path, doc: Any) -> None:
    """Files are written synchronously: the export is a batch job, not a server."""
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))


def _prepare(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)


async def _keyset(
    conn: AsyncConnection, table: sa.Table, order: tuple[str, str], where: list[Any], size: int
) -> AsyncIterator[list[RowMapping]]:
    """Rows in ``order`` ascending, a batch at a time (keyset: no OFFSET)."""
    first, second = table.c[order[0]], table.c[order[1]]
    after: tuple[Any, Any] | None = None
    while True:
        stmt = sa.select(table).where(*where)
        if after is not None:
            stmt = stmt.where(sa.tuple_(first, second) > sa.tuple_(*after))
        rows = list((await conn.execute(stmt.order_by(first, second).limit(size))).mappings())
        if not rows:
            return
        yield rows
        after = (rows[-1][order[0]], rows[-1][order[1]])


async def export_directory(
    conn: AsyncConnection,
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
    where = [pr.c.project_id == project_id] if project_id is not None else []
    total = int((await conn.execute(sa.select(sa.func.count()).select_from(pr).where(*where))).scalar_one())
    on_progress(0, total)
    async for rows in _keyset(conn, pr, ("created_at", "id"), where, batch_size):
        for row in rows:
            doc = export_record(row)
            name = doc["id"] if isinstance(doc.get("id"), str) and "/" not in doc["id"] else str(row["id"])
            _write(directory / f"{name}.json", doc)
        report.records += len(rows)
        on_progress(report.records, total)
    # In time order; events of one time in the order of the imported file, then by id.
    te = taint_events
    te_where = [te.c.project_id == project_id] if project_id is not None else []
    ordered = sa.select(te).where(*te_where).order_by(te.c.timestamp, sa.func.coalesce(te.c.seq, -1), te.c.id)
    events = [export_taint_event(r) for r in (await conn.execute(ordered)).mappings()]
    _write(directory / TAINT_EVENTS_FILE, events)
    report.taint_events = len(events)
    cp_where = [checkpoints.c.project_id == project_id] if project_id is not None else []
    saved: dict[str, Any] = {}
    async for rows in _keyset(conn, checkpoints, ("created_at", "id"), cp_where, batch_size):
        saved.update({r["id"]: export_checkpoint(r) for r in rows})
    _write(directory / CHECKPOINTS_FILE, saved)
    report.checkpoints = len(saved)
    await conn.rollback()
    report.seconds = time.monotonic() - started
    return report
