"""Client commands for human review: ``review ls``, ``review show``, and the three decisions.
HTTP only."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from orchestration_service.cli.client import DEFAULT_URL, api, run
from orchestration_service.cli.commands import ApiKey, AsJson, Url, _short_time, emit_json, out

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


@review_app.command("ls")
def review_ls(
    project: Annotated[str | None, typer.Option("--project", "-p")] = None,
    status: Annotated[str | None, typer.Option("--status", "-s", help="open, decided or closed.")] = "open",
    all_: Annotated[bool, typer.Option("--all", help="Every status (overrides --status).")] = False,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """List reviews, oldest request first (by default the open queue)."""

    def body() -> None:
        with api(url, api_key) as client:
            page = client.get("/reviews", limit=limit, project_id=project, status=None if all_ else status)
        if as_json:
            emit_json(page)
            return
        out.print(_review_table(page["items"]))
        more = "+" if page.get("total_capped") else ""
        out.print(f"{len(page['items'])} of {page['total']}{more}")

    run(body)


@review_app.command("show")
def review_show(
    review_id: str, url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False
) -> None:
    """A review: its task, the worker's output and artifacts, and QA's reason."""

    def body() -> None:
        with api(url, api_key) as client:
            doc = client.get(f"/reviews/{review_id}")
        emit_json(doc) if as_json else _show(doc)

    run(body)


def _decide(
    url: str, api_key: str | None, review_id: str, action: str, payload: dict[str, Any], as_json: bool
) -> None:
    def body() -> None:
        with api(url, api_key) as client:
            doc = client.post(f"/reviews/{review_id}/{action}", payload)
        if as_json:
            emit_json(doc)
            return
        task = doc["task"]
        decided = f"{doc['review_id']} {doc['decision']} by {doc['reviewer']}"
        out.print(f"{decided}; task {task['task_id']} is {task['status']}")

    run(body)


@review_app.command("approve")
def review_approve(
    review_id: str,
    comment: Annotated[str | None, typer.Option(help="Kept with the decision.")] = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Approve: the task completes, its provenance naming you."""
    _decide(url, api_key, review_id, "approve", {"comment": comment} if comment else {}, as_json)


@review_app.command("reject")
def review_reject(
    review_id: str,
    reason: Annotated[str, typer.Option(help="Why (required).")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Reject: the task fails."""
    _decide(url, api_key, review_id, "reject", {"reason": reason}, as_json)


@review_app.command("request-changes")
def review_request_changes(
    review_id: str,
    feedback: Annotated[str, typer.Option(help="What to change (sent to the worker; required).")],
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Request changes: a new attempt starts with the feedback."""
    _decide(url, api_key, review_id, "request-changes", {"feedback": feedback}, as_json)
