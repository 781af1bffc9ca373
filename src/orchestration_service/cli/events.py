"""Client commands of ``events``: follow the feed (``tail``), send CloudEvents (``post``). HTTP only."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from orchestration_service.cli.client import EXIT_ERROR, EXIT_OK, EXIT_USAGE, CliError, run
from orchestration_service.cli.commands import _short_time
from orchestration_service.cli.output import Format, out
from orchestration_service.cli.session import (
    client_command,
    session,
)
from orchestration_service.client import Call
from orchestration_service.client import calls as c

events_app = typer.Typer(help="The event feed, and sending events.", no_args_is_help=True)
BATCH = "application/cloudevents-batch+json"


@events_app.command("tail")
@client_command
def events_tail(
    ctx: typer.Context,
    type_: Annotated[
        list[str] | None, typer.Option("--type", "-t", help="Topic pattern; repeatable.")
    ] = None,
    after: Annotated[
        int | None, typer.Option(min=0, help="Replay from after this sequence (0 = all).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after N events.")] = None,
    project: Annotated[str | None, typer.Option("--project", "-p")] = None,
    subject: Annotated[str | None, typer.Option(help="Only events about this subject (a task id).")] = None,
) -> None:
    """Follow the event feed (JSON lines with --json or -o jsonl)."""

    def people(e: dict[str, Any]) -> None:
        event = e["cloudevent"]
        out.print(
            f"{e['seq']:>8}  {_short_time(event.get('time'))}  {e['event']:<24} {event.get('subject') or ''}"
        )

    def body() -> None:
        with session(ctx) as s:
            feed = s.api.client.events(type_ or None, project_id=project, subject=subject, after=after)
            for seen, event in enumerate(s.api.stream(feed), start=1):
                doc = {"seq": int(event.id or 0), "event": event.event, "cloudevent": event.data}
                s.emit_event(doc, people)
                if limit is not None and seen >= limit:
                    break

    run(body)


def read_events(file: str) -> Any:
    """The CloudEvent (an object) or batch (an array) in FILE, ``-`` for stdin."""
    name = "stdin" if file == "-" else file
    try:
        raw = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {name}: {exc.strerror or exc}", EXIT_USAGE) from None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CliError(f"{name} is not JSON: {exc}", EXIT_USAGE) from None
    if isinstance(doc, list) and not doc:
        raise CliError(f"{name} holds an empty array: no event to send", EXIT_USAGE)
    if not isinstance(doc, dict | list):
        raise CliError(f"{name} must hold a CloudEvent (a JSON object) or a batch (an array)", EXIT_USAGE)
    return doc


def _people(doc: dict[str, Any]) -> None:
    if "results" not in doc:
        out.print(f"{doc['outcome']}  {doc['id']}  {doc['type']}  {doc['detail']}", markup=False)
        return
    table = Table(show_edge=False, header_style="bold")
    for col in ("#", "ID", "STATUS", "OUTCOME", "DETAIL"):
        table.add_column(col, overflow="fold")
    for r in doc["results"]:
        table.add_row(str(r["index"]), str(r.get("id") or "-"), str(r["status"]), r["outcome"], r["detail"])
    out.print(table)


@events_app.command("post")
@client_command
def events_post(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="A JSON file: a CloudEvent, or an array of them; - for stdin.")],
) -> None:
    """Send a CloudEvent (or a batch) to the ingress, POST /api/v1/events, and print the outcome.

    Exit 0 when processed, a duplicate or ignored; 1 when refused (for a batch: any of them);
    2 when FILE is not JSON."""

    def body() -> int:
        doc = read_events(file)
        if isinstance(doc, dict):
            call: Call[Any] = c.post_event(doc)
        else:  # answered per event, with 200 even when some are refused
            call = Call("POST", "/events", c.raw, body=doc, content_type=BATCH)
        with session(ctx) as s:
            answer = s.api.run_call(call)
            result: dict[str, Any] = answer if isinstance(answer, dict) else answer.model_dump()
            if s.fmt is Format.jsonl and "results" in result:
                s.emit_page({"items": result["results"]}, _people)
            else:
                s.emit(result, _people)
        refused = any(r["outcome"] == "rejected" for r in result.get("results", []))
        return EXIT_ERROR if refused else EXIT_OK

    raise typer.Exit(run(body))
