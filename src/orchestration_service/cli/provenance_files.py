"""``orchestration-service provenance import|export``: the legacy provenance directory in
and out of the database (talks to the database directly, like ``db`` and ``keys``).

Exit codes: 0 done; 1 some files failed to import (each listed with its reason; the rest
was imported); 2 unusable arguments or an unmigrated database.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from orchestration_service.cli.commands import provenance_app
from orchestration_service.cli.settings import settings_or_exit
from orchestration_service.config import Settings
from orchestration_service.db.engine import Database, create_engine
from orchestration_service.db.migrate import is_up_to_date
from orchestration_service.repositories.ports import Storage
from orchestration_service.repositories.storage import SqlStorage
from orchestration_service.services.provenance.legacy_export import export_directory
from orchestration_service.services.provenance.legacy_import import DEFAULT_BATCH, import_directory

T = TypeVar("T")
ONE_DAY = 86_400.0
err = Console(stderr=True, highlight=False)


class _Reporter:
    """A Rich progress bar on a terminal; otherwise a line every few seconds."""

    def __init__(self, label: str, *, quiet: bool) -> None:
        self.label = label
        self.quiet = quiet
        self.tty = err.is_terminal and not quiet
        self.progress: Progress | None = None
        self.task: Any = None
        self.last_line = 0.0

    def __enter__(self) -> _Reporter:
        if self.tty:
            self.progress = Progress(
                TextColumn(self.label),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err,
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task(self.label, total=None)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def __call__(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=done, total=total)
            return
        now = time.monotonic()
        if not self.quiet and (now - self.last_line >= 5 or done == total):
            self.last_line = now
            print(f"{self.label}: {done}/{total} record files", file=sys.stderr, flush=True)


def _run(settings: Settings, work: Callable[[Storage], Awaitable[T]]) -> T:
    async def main() -> T:
        if not await is_up_to_date(settings.storage):
            typer.echo(
                "orchestration-service: the database is not at the latest migration; "
                "run `orchestration-service db upgrade` first",
                err=True,
            )
            raise typer.Exit(2)
        # The service's pooled engine: the job's units of work reuse warm connections (their
        # prepared statements, SQLite's page cache); no statement of a one-off job is cut short.
        storage = settings.storage.model_copy(update={"pool_statement_timeout_seconds": ONE_DAY})
        db = Database(create_engine(storage, application_name="orchestration-service-cli"), storage=storage)
        try:
            return await work(SqlStorage(db))
        finally:
            await db.close()

    return asyncio.run(main())


@provenance_app.command("import")
def provenance_import(
    directory: Annotated[
        Path, typer.Argument(help="The legacy directory: <id>.json, taint_events.json, checkpoints.json.")
    ],
    batch_size: Annotated[int, typer.Option(min=1, max=5000, help="Records per statement.")] = DEFAULT_BATCH,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, only the summary.")] = False,
) -> None:
    """Import legacy provenance files into the database (idempotent: a re-run changes nothing)."""
    if not directory.is_dir():
        typer.echo(f"orchestration-service: {directory} is not a directory", err=True)
        raise typer.Exit(2)
    settings = settings_or_exit()
    with _Reporter("importing", quiet=quiet) as progress:
        report = _run(
            settings,
            lambda storage: import_directory(storage, directory, batch_size=batch_size, on_progress=progress),
        )
    for name, reason in report.failures:
        typer.echo(f"failed: {name}: {reason}", err=True)
    typer.echo(report.summary())
    if report.failures:
        typer.echo(
            f"orchestration-service: {len(report.failures)} file(s) or entries could not be imported",
            err=True,
        )
        raise typer.Exit(1)


@provenance_app.command("export")
def provenance_export(
    directory: Annotated[Path, typer.Argument(help="Where to write the legacy layout (created if missing).")],
    project: Annotated[str | None, typer.Option("--project", help="Only this project.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Write into a directory that already has .json files.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, only the summary.")] = False,
) -> None:
    """Export provenance to the legacy file layout (the legacy reader loads it)."""
    if directory.exists() and not directory.is_dir():
        typer.echo(f"orchestration-service: {directory} is not a directory", err=True)
        raise typer.Exit(2)
    if directory.is_dir() and not force and any(directory.glob("*.json")):
        typer.echo(f"orchestration-service: {directory} already holds .json files (use --force)", err=True)
        raise typer.Exit(2)
    settings = settings_or_exit()
    with _Reporter("exporting", quiet=quiet) as progress:
        report = _run(
            settings,
            lambda storage: export_directory(storage, directory, project_id=project, on_progress=progress),
        )
    typer.echo(report.summary())
