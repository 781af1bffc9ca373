"""Client commands for human review: ``review ls``, ``review show``, and the three decisions.
HTTP only."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from orchestration_service.cli.client import run
from orchestration_service.cli.commands import _short_time
from orchestration_service.cli.output import out
from orchestration_service.cli.session import (
    client_command,
    session,
)

review_app = typer.Typer(help="Human reviews: the queue, one review, and decisions.", no_args_is_help=True)


def _review_table(items: list[dict[str, Any]]) -> Table:
    table = Table(show_edge=False, header_style="bold")
    table.add_column("REVIEW", no_wrap=True, min_width=36)  # ids are never cut: people copy them
    for col in ("PROJECT", "STATUS", "REQUESTED", "DECISION", "REASON", "TASK"):
        table.add_column(col, overflow="fold")
    for r in items:
        table.add_row(
            r["review_id"],
            r["project_id"],
            r["status"],
            _short_time(r.get("requested_at")),
            r.get("decision") or "-",
            (r.get("reason") or "")[:60],
            (r.get("task_description") or "")[:60],
        )
    return table


def _show(doc: dict[str, Any]) -> None:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for key in ("review_id", "task_id", "project_id", "status", "attempt", "reason", "qa_result_id"):
        table.add_row(key, str(doc.get(key) if doc.get(key) is not None else "-"))
    table.add_row("requested_at", _short_time(doc.get("requested_at")))
    if doc.get("decision"):
        table.add_row("decision", f"{doc['decision']} by {doc.get('reviewer')}")
        table.add_row("decided_at", _short_time(doc.get("decided_at")))
        if doc.get("decision_text"):
            table.add_row("text", doc["decision_text"])
    if doc.get("closed_reason"):
        table.add_row("closed", doc["closed_reason"])
    table.add_row("task status", doc["task"]["status"])
    table.add_row("description", doc["task"].get("description") or "")
    for a in doc.get("artifacts") or []:
        table.add_row(
            "artifact", f"{a.get('id')} ({a.get('type')}) {a.get('path') or a.get('location') or ''}"
        )
    if doc.get("checklist"):
        table.add_row("checklist", orjson.dumps(doc["checklist"]).decode())
    out.print(table)
    output = doc.get("output")
    if output is not None:
        out.print("[bold]output[/bold]")
        content = output.get("content") if isinstance(output, dict) else None
        out.print(
            content
            if isinstance(content, str)
            else orjson.dumps(output, option=orjson.OPT_INDENT_2).decode(),
            markup=False,
            highlight=False,
        )


def _people_page(page: dict[str, Any]) -> None:
    out.print(_review_table(page["items"]))
    more = "+" if page.get("total_capped") else ""
    out.print(f"{len(page['items'])} of {page['total']}{more}")


@review_app.command("ls")
@client_command
def review_ls(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Option("--project", "-p")] = None,
    status: Annotated[str | None, typer.Option("--status", "-s", help="open, decided or closed.")] = "open",
    all_: Annotated[bool, typer.Option("--all", help="Every status (overrides --status).")] = False,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
) -> None:
    """List reviews, oldest request first (by default the open queue)."""

    def body() -> None:
        with session(ctx) as s:
            page = s.api.get("/reviews", limit=limit, project_id=project, status=None if all_ else status)
        s.emit_page(page, _people_page)

    run(body)


@review_app.command("show")
@client_command
def review_show(
    ctx: typer.Context,
    review_id: str,
) -> None:
    """A review: its task, the worker's output and artifacts, and QA's reason."""

    def body() -> None:
        with session(ctx) as s:
            s.emit(s.api.get(f"/reviews/{review_id}"), _show)

    run(body)


def _decided(doc: dict[str, Any]) -> None:
    task = doc["task"]
    decided = f"{doc['review_id']} {doc['decision']} by {doc['reviewer']}"
    out.print(f"{decided}; task {task['task_id']} is {task['status']}")


def _decide(ctx: typer.Context, review_id: str, action: str, payload: dict[str, Any]) -> None:
    def body() -> None:
        with session(ctx) as s:
            s.emit(s.api.post(f"/reviews/{review_id}/{action}", payload), _decided)

    run(body)


@review_app.command("approve")
@client_command
def review_approve(
    ctx: typer.Context,
    review_id: str,
    comment: Annotated[str | None, typer.Option(help="Kept with the decision.")] = None,
) -> None:
    """Approve: the task completes, its provenance naming you."""
    _decide(ctx, review_id, "approve", {"comment": comment} if comment else {})


@review_app.command("reject")
@client_command
def review_reject(
    ctx: typer.Context,
    review_id: str,
    reason: Annotated[str, typer.Option(help="Why (required).")],
) -> None:
    """Reject: the task fails."""
    _decide(ctx, review_id, "reject", {"reason": reason})


@review_app.command("request-changes")
@client_command
def review_request_changes(
    ctx: typer.Context,
    review_id: str,
    feedback: Annotated[str, typer.Option(help="What to change (sent to the worker; required).")],
) -> None:
    """Request changes: a new attempt starts with the feedback."""
    _decide(ctx, review_id, "request-changes", {"feedback": feedback})
