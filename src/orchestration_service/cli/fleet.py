"""Client commands of ``fleet``: workers, queues per tier, failures, dead letters (list,
show, replay, discard). HTTP only."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from orchestration_service.cli.client import run
from orchestration_service.cli.commands import _short_time
from orchestration_service.cli.output import Format, emit, out
from orchestration_service.cli.session import (
    ApiKey,
    ProfileOpt,
    Url,
    client_command,
    session,
)

fleet_app = typer.Typer(help="The fleet: workers, queues, failures and dead letters.", no_args_is_help=True)
dead_letters_app = typer.Typer(
    help="Events this service dead-lettered; with no command, the newest are listed.",
    invoke_without_command=True,
)
fleet_app.add_typer(dead_letters_app, name="dead-letters")

Limit = Annotated[int, typer.Option(help="At most this many.", min=1, max=500)]


def _table(*columns: str) -> Table:
    table = Table(show_edge=False, header_style="bold")
    for col in columns:
        table.add_column(col, overflow="fold")
    return table


@fleet_app.command("workers")
@client_command
def workers(
    ctx: typer.Context,
    limit: Limit = 100,
    offset: int = 0,
) -> None:
    """Workers seen on task events: last seen, stale, tiers, models, counts."""

    def people(doc: dict[str, Any]) -> None:
        table = _table(
            "WORKER", "LAST SEEN", "STALE", "TIERS", "MODELS", "IN FLIGHT", "DONE", "FAILED", "REJECTED"
        )
        for w in doc["items"]:
            table.add_row(
                w["worker_id"],
                _short_time(w["last_seen"]),
                "stale" if w["stale"] else "-",
                ",".join(w["tiers"]) or "-",
                ",".join(w["models"]) or "-",
                str(w["in_flight"]),
                str(w["completed"]),
                str(w["failed"]),
                str(w["rejected"]),
            )
        out.print(table)
        out.print(f"{doc['total']} workers; stale after {doc['stale_after_seconds']:g} s unseen")

    def body() -> None:
        with session(ctx) as s:
            s.emit_page(s.api.get("/workers", limit=limit, offset=offset), people)

    run(body)


@fleet_app.command("queues")
@client_command
def queues(
    ctx: typer.Context,
) -> None:
    """Tasks pending, running and validating per tier, and the broker's queues."""

    def people(doc: dict[str, Any]) -> None:
        table = _table(
            "TIER", "PENDING", "RUNNING", "VALIDATING", "OLDEST WAITING", "BROKER MSGS", "CONSUMERS"
        )
        for q in doc["items"]:
            broker = q.get("broker")
            oldest = q.get("oldest_waiting_seconds")
            table.add_row(
                q["tier"] or "unrouted",
                str(q["pending"]),
                str(q["running"]),
                str(q["validating"]),
                "-" if oldest is None else f"{oldest:.0f} s",
                "-" if broker is None else str(broker["messages"]),
                "-" if broker is None else str(broker["consumers"]),
            )
        out.print(table)
        source = doc["broker"]
        note = f" ({source['error']})" if source.get("error") else ""
        out.print(f"broker figures: {source['source']}{note}")

    def body() -> None:
        with session(ctx) as s:
            s.emit_page(s.api.get("/queues"), people)

    run(body)


@fleet_app.command("failures")
@client_command
def failures(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Option("--project", "-p")] = None,
    tier: Annotated[str | None, typer.Option()] = None,
    reason: Annotated[str | None, typer.Option(help="The reason starts with this.")] = None,
    limit: Limit = 50,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
) -> None:
    """Recently failed tasks, newest first."""

    def people(doc: dict[str, Any]) -> None:
        table = _table("TASK", "PROJECT", "TIER", "FAILED", "REASON", "ERROR")
        for f in doc["items"]:
            error = f.get("error")
            table.add_row(
                f["task_id"],
                f["project_id"],
                f.get("tier") or "-",
                _short_time(f.get("failed_at")),
                f.get("reason") or "-",
                (error if isinstance(error, str) else orjson.dumps(error).decode())[:80],
            )
        out.print(table)
        if doc.get("next_cursor"):
            out.print(f"more: --cursor {doc['next_cursor']}")

    def body() -> None:
        with session(ctx) as s:
            doc = s.api.get(
                "/failures", project_id=project, tier=tier, reason=reason, limit=limit, cursor=cursor
            )
        s.emit_page(doc, people)

    run(body)


def _letters_table(items: list[dict[str, Any]]) -> Table:
    table = _table("ID", "WHEN", "SOURCE", "TYPE", "PROJECT", "KIND", "REPLAYS", "REASON")
    for d in items:
        table.add_row(
            d["id"],
            _short_time(d["created_at"]),
            d["source"],
            d.get("event_type") or "-",
            d.get("project_id") or "-",
            d["kind"],
            str(d["replays"]),
            d["reason"][:80],
        )
    return table


@dead_letters_app.callback()
@client_command
def dead_letters(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Option("--project", "-p")] = None,
    source: Annotated[str | None, typer.Option(help="broker or ingress")] = None,
    limit: Limit = 50,
) -> None:
    """List dead letters, newest first (or run one of the commands)."""
    if ctx.invoked_subcommand is not None:
        return

    def body() -> None:
        with session(ctx) as s:
            doc = s.api.get("/dead-letters", project_id=project, source=source, limit=limit)
        s.emit_page(doc, lambda d: out.print(_letters_table(d["items"])))

    run(body)


@dead_letters_app.command("show")
@client_command
def show(
    ctx: typer.Context,
    letter_id: str,
) -> None:
    """One dead letter with its payload (JSON unless -o yaml)."""

    def body() -> None:
        with session(ctx) as s:
            doc = s.api.get(f"/dead-letters/{letter_id}")
        emit(doc, Format.yaml if s.fmt is Format.yaml else Format.json, lambda _: None)

    run(body)


@dead_letters_app.command("replay")
@client_command
def replay(
    ctx: typer.Context,
    letter_id: str,
) -> None:
    """Run the event through the handlers again, once (admin). Exit 1 if it is still refused."""

    def body() -> None:
        with session(ctx) as s:
            doc = s.api.post(f"/dead-letters/{letter_id}/replay")
        s.emit(doc, lambda d: out.print(f"{d['outcome']}: {d['detail']}"))
        if doc["outcome"] == "dead_lettered":
            raise typer.Exit(1)

    run(body)


@dead_letters_app.command("discard")
def discard(
    ctx: typer.Context,
    letter_id: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    url: Url = None,
    api_key: ApiKey = None,
    profile: ProfileOpt = None,
) -> None:
    """Delete a dead letter for good (admin)."""
    if not yes:
        typer.confirm(f"Discard dead letter {letter_id}? Its event is lost", abort=True)

    def body() -> None:
        with session(ctx) as s:
            s.api.request("DELETE", f"/dead-letters/{letter_id}")
        out.print(f"discarded {letter_id}")

    run(body)
