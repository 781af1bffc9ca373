"""The ``orchestration-service`` command: server administration and the HTTP client."""

from __future__ import annotations

import ipaddress
import logging
import signal
import sys
from typing import Annotated

import typer

from orchestration_service import __version__
from orchestration_service.cli import (  # noqa: F401  (registers import/export)
    commands,
    provenance_files,
    task_actions,
    task_tree,
)
from orchestration_service.cli.events import events_app
from orchestration_service.cli.fleet import fleet_app
from orchestration_service.cli.keys import keys_app
from orchestration_service.cli.output import Format
from orchestration_service.cli.profiles import Flags
from orchestration_service.cli.projects import project_app
from orchestration_service.cli.reviews import review_app
from orchestration_service.cli.settings import settings_or_exit
from orchestration_service.redaction import redact
from orchestration_service.repositories.backends import backend_for

app = typer.Typer(
    name="orchestration-service",
    help="DATS Orchestration Service: run the server, manage its database, and drive it over HTTP.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)
db_app = typer.Typer(help="Database schema management.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(commands.task_app, name="task")
app.add_typer(project_app, name="project")
app.add_typer(commands.provenance_app, name="provenance")
app.add_typer(events_app, name="events")
app.add_typer(keys_app, name="keys")
app.add_typer(review_app, name="review")
app.add_typer(fleet_app, name="fleet")


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"orchestration-service {__version__}")
        raise typer.Exit()


CLIENT = "Client options (every client command; also accepted after its name)"


@app.callback()
def root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Show the version and exit."),
    ] = False,
    url: Annotated[
        str | None,
        typer.Option(help="Service base URL (env ORCH_URL).", show_default=False, rich_help_panel=CLIENT),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(help="Bearer token (env ORCH_API_KEY).", show_default=False, rich_help_panel=CLIENT),
    ] = None,
    api_key_file: Annotated[
        str | None,
        typer.Option(
            help="A file holding the key (env ORCH_API_KEY_FILE).", show_default=False, rich_help_panel=CLIENT
        ),
    ] = None,
    output: Annotated[
        Format | None,
        typer.Option(
            "--output",
            "-o",
            help="table, json, jsonl or yaml (env ORCH_OUTPUT).",
            show_default=False,
            rich_help_panel=CLIENT,
        ),
    ] = None,
    profile: Annotated[
        str | None,
        typer.Option(
            help="A profile of ~/.config/orchestration-service/config.toml (env ORCH_PROFILE).",
            show_default=False,
            rich_help_panel=CLIENT,
        ),
    ] = None,
) -> None:
    """Options of the command itself (before any subcommand). Client commands take each
    setting from the first of: the command line, the environment, the profile, the default;
    see docs/using/cli-config.md."""
    # Kept, not resolved: a bad profile must not stop `serve` or `db upgrade`, only the
    # client commands, which resolve it when they run (cli/session.py).
    ctx.obj = Flags(url, api_key, api_key_file, None if output is None else str(output), profile)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: only this machine can connect."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Bind address (default from ORCH_HOST / config: 127.0.0.1)")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from ORCH_PORT / config: 8000)")] = None,
    workers: Annotated[
        int | None, typer.Option(help="HTTP worker processes (needs PostgreSQL when > 1)")
    ] = None,
    migrate: Annotated[
        bool, typer.Option("--migrate/--no-migrate", help="Apply pending migrations first")
    ] = True,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Allow a non-loopback address with auth off (as ORCH_AUTH_ALLOW_INSECURE=true)",
        ),
    ] = False,
) -> None:
    """Serve the API with whatever the configuration says."""
    import uvicorn

    from orchestration_service.db.migrate import upgrade
    from orchestration_service.logs import configure_logging

    settings = settings_or_exit()
    server = settings.server.model_copy(
        update={k: v for k, v in {"host": host, "port": port, "workers": workers}.items() if v is not None}
    )
    settings = settings.model_copy(update={"server": server})
    if server.workers > 1 and not backend_for(settings.storage.database_url).many_processes:
        # The processes elect one outbox relay through PostgreSQL; on SQLite each would
        # number the event log on its own. (The in-process bus is fine with several: events
        # from workers come in over HTTP, and the feed is read from the database.)
        typer.echo(
            "orchestration-service: invalid setting server.workers (ORCH_WORKERS): more than one worker "
            "needs PostgreSQL (ORCH_DATABASE_URL=postgresql+asyncpg://…), not SQLite",
            err=True,
        )
        raise typer.Exit(2)
    exposed = not settings.auth.enabled and not is_loopback(server.host)
    if exposed and not (insecure or settings.auth.allow_insecure):
        typer.echo(
            f"orchestration-service: refusing to listen on {server.host} with auth off: anyone who "
            "can reach it could submit, cancel and roll back. Turn auth on (ORCH_AUTH_ENABLED=true "
            "and a key: ORCH_AUTH__BOOTSTRAP_ADMIN_KEY or `orchestration-service keys create`), "
            "listen on 127.0.0.1, or accept the risk with ORCH_AUTH_ALLOW_INSECURE=true or --insecure",
            err=True,
        )
        raise typer.Exit(2)
    configure_logging(settings.logging)
    if exposed:
        logging.getLogger("orchestration_service.cli").warning(
            "INSECURE: listening on %s with auth off (auth.allow_insecure): anyone who can reach "
            "this address can change any project's tasks",
            server.host,
        )
    if migrate:
        try:
            upgrade(settings.storage)
        except Exception as exc:
            typer.echo(f"orchestration-service: cannot migrate the database: {redact(str(exc))}", err=True)
            raise typer.Exit(1) from None
    # Workers re-read settings from the environment; pass the CLI's choices along.
    import os

    os.environ["ORCH_HOST"] = server.host
    os.environ["ORCH_PORT"] = str(server.port)
    # uvicorn shuts down gracefully on SIGTERM and then re-raises the signal to the handler
    # that was installed before it; a no-op one lets a clean shutdown exit with status 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    from orchestration_service.metrics import prepare_multiprocess

    prepare_multiprocess(server.workers)  # one /metrics answer for all the workers
    uvicorn.run(
        "orchestration_service.main:app_factory",
        factory=True,
        host=server.host,
        port=server.port,
        workers=server.workers,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(server.shutdown_grace_seconds) or None,
        timeout_keep_alive=int(server.keep_alive_seconds),
        loop="uvloop",
        http="httptools",
        server_header=False,
    )


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision")] = "head") -> None:
    """Apply pending migrations (safe to run from several replicas at once)."""
    from orchestration_service.db.migrate import upgrade

    settings = settings_or_exit()
    try:
        upgrade(settings.storage, revision)
    except Exception as exc:
        typer.echo(f"orchestration-service: migration failed: {redact(str(exc))}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"database at {revision}")


@db_app.command("wait")
def db_wait(
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds (exit 1).")] = 600.0,
    interval: Annotated[float, typer.Option(help="Seconds between checks.")] = 2.0,
) -> None:
    """Wait until the schema is at the latest migration (someone else runs `db upgrade`).
    Exit 0 then; 1 on timeout. For replicas that must not start before the migration
    (a Kubernetes init container beside the migration Job)."""
    import asyncio
    import time

    from orchestration_service.db.migrate import is_up_to_date

    settings = settings_or_exit()
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        try:
            if asyncio.run(is_up_to_date(settings.storage)):
                typer.echo("database at head")
                return
            last_error = "not at the latest migration yet"
        except Exception as exc:  # not reachable yet: keep waiting, say why at the end
            last_error = redact(str(exc))
        if time.monotonic() + interval > deadline:
            typer.echo(
                f"orchestration-service: database not migrated after {timeout:g}s: {last_error}", err=True
            )
            raise typer.Exit(1)
        time.sleep(interval)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
