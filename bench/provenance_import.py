"""The legacy provenance import (``python -m bench.provenance_import [--records N]``): generate
N legacy-format records (deep and wide lineage, taint events, checkpoints) once, then import
them into a fresh, migrated database several times and print records/s (median, min, max);
then the re-import of the same directory into the loaded database (every record unchanged).
Target (issue 17): > 5,000 records/s on PostgreSQL. ``--backend sqlite`` or ``both``.

Each run also reports this process's CPU time per record (the import's own Python work:
parsing, checking, encoding; the database's is not in it), steadier than records/s on a
shared machine. Each run times the whole use case (``services.provenance.legacy_import.import_directory``):
reading and parsing the files, writing the rows, resolving the graph, refreshing planner
statistics; the database is new for each run, so runs are alike.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from bench.provenance_fixtures import generate
from bench.server import scratch_database
from orchestration_service.config import StorageSettings
from orchestration_service.db.engine import Database, create_engine
from orchestration_service.db.migrate import upgrade
from orchestration_service.repositories.storage import SqlStorage
from orchestration_service.services.provenance.legacy_import import import_directory

TARGET = 5_000  # records/s, a fresh import on PostgreSQL (issue 17)
ONE_DAY = 86_400.0  # no statement timeout, as in the CLI (cli/provenance_files.py)
# (database URL, directory) -> (records imported, records left unchanged)
ImportOnce = Callable[[str, Path], Awaitable[tuple[int, int]]]


async def import_once(url: str, directory: Path) -> tuple[int, int]:
    """One import the way the CLI runs it (the service's engine, no statement timeout)."""
    settings = StorageSettings(database_url=url, pool_statement_timeout_seconds=ONE_DAY)
    db = Database(create_engine(settings), storage=settings)
    try:
        report = await import_directory(SqlStorage(db), directory)
    finally:
        await db.close()
    if report.failures:
        raise SystemExit(f"import failed: {report.failures[:3]}")
    return report.records.inserted, report.records.unchanged


@asynccontextmanager
async def fresh_database(backend: str, pg_url: str, scratch: Path) -> AsyncIterator[str]:
    if backend == "postgresql":
        async with scratch_database(pg_url) as url:
            await asyncio.to_thread(upgrade, StorageSettings(database_url=url))
            yield url
        return
    path = Path(tempfile.mkdtemp(dir=scratch)) / "bench.db"
    url = f"sqlite+aiosqlite:///{path}"
    await asyncio.to_thread(upgrade, StorageSettings(database_url=url))
    yield url


def line(label: str, rates: list[float], cpu: list[float]) -> str:
    return (
        f"{label:<34} median {statistics.median(rates):8.0f} records/s"
        f"   (min {min(rates):.0f}, max {max(rates):.0f}, {len(rates)} runs;"
        f" process CPU median {statistics.median(cpu):.0f} us/record)"
    )


async def measure(args: argparse.Namespace, once: ImportOnce = import_once) -> None:
    with tempfile.TemporaryDirectory(prefix="orch-bench-import-") as tmp:
        directory = Path(tmp) / "legacy"
        started = time.monotonic()
        generate(directory, args.records, projects=args.projects, seed=0)
        print(f"generated {args.records} records in {time.monotonic() - started:.1f} s")
        backends = ["postgresql", "sqlite"] if args.backend == "both" else [args.backend]
        for backend in backends:
            fresh: list[float] = []
            again: list[float] = []
            fresh_cpu: list[float] = []  # process CPU, microseconds per record
            again_cpu: list[float] = []
            for _ in range(args.runs):
                async with fresh_database(backend, args.pg_url, Path(tmp)) as url:
                    t0, c0 = time.perf_counter(), time.process_time()
                    inserted, _ = await once(url, directory)
                    fresh.append(inserted / (time.perf_counter() - t0))
                    fresh_cpu.append((time.process_time() - c0) / max(inserted, 1) * 1e6)
                    t0, c0 = time.perf_counter(), time.process_time()
                    _, unchanged = await once(url, directory)
                    again.append(unchanged / (time.perf_counter() - t0))
                    again_cpu.append((time.process_time() - c0) / max(unchanged, 1) * 1e6)
                    if inserted != args.records or unchanged != args.records:
                        raise SystemExit(f"{inserted} inserted, {unchanged} unchanged of {args.records}")
                print(
                    f"  {backend} run: {fresh[-1]:.0f} records/s ({fresh_cpu[-1]:.0f} us CPU/record), "
                    f"re-import {again[-1]:.0f}/s ({again_cpu[-1]:.0f} us CPU/record)",
                    flush=True,
                )
            print(line(f"{backend} import of {args.records}", fresh, fresh_cpu))
            print(line(f"{backend} re-import (unchanged)", again, again_cpu))
            if backend == "postgresql":
                median = statistics.median(fresh)
                verdict = "met" if median > TARGET else "NOT met"
                print(f"{'target (issue 17)':<34} > {TARGET:,} records/s on PostgreSQL: {verdict}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.provenance_import", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--records", type=int, default=50_000)
    p.add_argument("--projects", type=int, default=10)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--backend", choices=["postgresql", "sqlite", "both"], default="both")
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    asyncio.run(measure(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
