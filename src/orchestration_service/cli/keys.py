"""``orchestration-service keys``: API key administration (talks to the database directly)."""

from __future__ import annotations

import asyncio
import sys
import uuid
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from orchestration_service.cli.settings import settings_or_exit
from orchestration_service.config import Settings
from orchestration_service.db.engine import Database, create_admin_engine
from orchestration_service.domain.access import Scope
from orchestration_service.domain.errors import OrchestrationError
from orchestration_service.repositories.storage import SqlStorage
from orchestration_service.services.auth import ApiKeyService

keys_app = typer.Typer(help="API keys (stored hashed; a new key is shown once).", no_args_is_help=True)
# Piped output (scripts, grep) gets whole lines rather than a table cut to 80 columns.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 240)


class ScopeOpt(StrEnum):
    read = "read"
    write = "write"
    admin = "admin"


def _run(settings: Settings, work: Any) -> Any:
    async def main() -> Any:
        db = Database(create_admin_engine(settings.storage))
        try:
            return await work(ApiKeyService(SqlStorage(db)))
        finally:
            await db.close()

    try:
        return asyncio.run(main())
    except OrchestrationError as exc:
        typer.echo(f"orchestration-service: {exc.detail}", err=True)
        raise typer.Exit(1) from None


def _settings() -> Settings:
    return settings_or_exit()


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="Who or what uses the key.")],
    scope: Annotated[ScopeOpt, typer.Option("--scope", help="read, write or admin.")],
    project: Annotated[
        list[str] | None, typer.Option("--project", help="A project it may see; repeatable.")
    ] = None,
    all_projects: Annotated[bool, typer.Option("--all-projects", help="Every project.")] = False,
) -> None:
    """Create a key and print it once."""
    if bool(project) == all_projects:
        typer.echo("orchestration-service: give --project P (repeatable) or --all-projects", err=True)
        raise typer.Exit(2)
    key, record = _run(
        _settings(),
        lambda svc: svc.create(
            name=name, scope=Scope(scope.value), projects=None if all_projects else project
        ),
    )
    typer.echo(key)
    typer.echo(f"key {record.id} ({record.scope}) created; it is not shown again", err=True)


@keys_app.command("ls")
def ls() -> None:
    """List keys (never the keys themselves)."""
    rows = _run(_settings(), lambda svc: svc.list())
    table = Table(show_edge=False, header_style="bold")
    table.add_column("ID", no_wrap=True, min_width=36)  # ids are never cut: people copy them
    for col in ("NAME", "HINT", "SCOPE", "PROJECTS", "CREATED", "REVOKED"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            str(r.id),
            r.name,
            r.key_hint + "…",
            r.scope,
            "all" if r.all_projects else ",".join(r.projects),
            r.created_at.isoformat(timespec="seconds"),
            r.revoked_at.isoformat(timespec="seconds") if r.revoked_at else "-",
        )
    out.print(table)


@keys_app.command("revoke")
def revoke(key_id: str) -> None:
    """Revoke a key (effective on every replica within seconds)."""
    try:
        kid = uuid.UUID(key_id)
    except ValueError:
        typer.echo(f"orchestration-service: {key_id} is not a key id", err=True)
        raise typer.Exit(2) from None
    _run(_settings(), lambda svc: svc.revoke(kid))
    typer.echo(f"key {kid} revoked")
