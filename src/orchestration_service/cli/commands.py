"""Client commands: ``task``, ``provenance``, ``events`` (``project`` is ``cli/projects.py``). HTTP only."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from orchestration_service.cli.client import EXIT_CANCELLED, EXIT_ERROR, EXIT_OK, EXIT_USAGE, fail, run
from orchestration_service.cli.follow import follow, progress_text
from orchestration_service.cli.output import Format, out
from orchestration_service.cli.session import (
    client_command,
    session,
)
from orchestration_service.domain.lifecycle import FINAL_STATES, Priority, TaskStatus

task_app = typer.Typer(help="Submit, inspect and follow tasks.", no_args_is_help=True)
provenance_app = typer.Typer(help="Provenance records and their graph.", no_args_is_help=True)
FINAL = frozenset(s.value for s in FINAL_STATES)


def _short_time(value: str | None) -> str:
    return value.replace("T", " ")[:19] if value else "-"


def _task_table(items: list[dict[str, Any]]) -> Table:
    table = Table(show_edge=False, header_style="bold")
    table.add_column("TASK", no_wrap=True, min_width=36)  # ids are never cut: people copy them
    for col in ("PROJECT", "STATUS", "PRIORITY", "TIER", "CREATED", "DESCRIPTION"):
        table.add_column(col, overflow="fold")
    for t in items:
        table.add_row(
            t["task_id"],
            t["project_id"],
            t["status"],
            t["priority"],
            t.get("tier") or "-",
            _short_time(t.get("created_at")),
            (t.get("description") or "")[:60],
        )
    return table


def show_task(t: dict[str, Any]) -> None:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for key in ("task_id", "project_id", "status", "priority", "mode", "domain", "tier", "qa_profile"):
        table.add_row(key, str(t.get(key) or "-"))
    table.add_row("attempt", f"{t.get('attempt')} of {t.get('max_attempts')}")
    for key in ("created_at", "started_at", "completed_at"):
        table.add_row(key, _short_time(t.get(key)))
    if t.get("execution_time_ms") is not None:
        table.add_row("execution_time", f"{t['execution_time_ms']} ms")
    if t.get("provenance_id"):
        table.add_row("provenance_id", t["provenance_id"])
    for a in t.get("artifacts") or []:
        table.add_row(
            "artifact", f"{a.get('id')} ({a.get('type')}) {a.get('path') or a.get('location') or ''}"
        )
    if t.get("subtasks"):
        done = sum(1 for s in t["subtasks"] if s["status"] == TaskStatus.COMPLETED)
        table.add_row("subtasks", f"{done} of {len(t['subtasks'])} completed")
    if t.get("progress"):
        table.add_row("progress", progress_text(t["progress"]))
    if t.get("error"):
        table.add_row("error", orjson.dumps(t["error"]).decode())
    table.add_row("description", t.get("description") or "")
    out.print(table)


def exit_for(status: str) -> int:
    exits: dict[str, int] = {
        TaskStatus.COMPLETED: EXIT_OK,
        TaskStatus.FAILED: EXIT_ERROR,
        TaskStatus.CANCELLED: EXIT_CANCELLED,
    }
    return exits.get(status, EXIT_OK)


# -- task -------------------------------------------------------------------------------
@task_app.command("submit")
@client_command
def task_submit(
    ctx: typer.Context,
    description: Annotated[str, typer.Argument(help="What to do.")],
    project: Annotated[
        str | None,
        typer.Option("--project", "-p", help="Project id (env ORCH_PROJECT, or the profile's project)."),
    ] = None,
    priority: Annotated[Priority | None, typer.Option(help="Default: the service's (normal).")] = None,
    decompose: Annotated[bool, typer.Option("--decompose", help="Allow splitting into subtasks.")] = False,
    qa_profile: Annotated[str | None, typer.Option("--qa-profile", help="Pin the QA profile.")] = None,
    domain: Annotated[str | None, typer.Option(help="Pin the domain.")] = None,
    tier: Annotated[str | None, typer.Option(help="Pin the worker tier.")] = None,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key", help="Retry-safe key.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the task until it is final.")] = False,
    timeout: Annotated[
        float | None, typer.Option(help="With --wait: give up after S seconds (exit 4).")
    ] = None,
) -> None:
    """Submit a task. Exit 0 when accepted (or, with --wait, completed); 1 failed; 3 cancelled; 4 timeout."""

    def body() -> int:
        options: dict[str, Any] = {"decompose": decompose}
        for key, value in (("qa_profile", qa_profile), ("domain", domain), ("tier", tier)):
            if value:
                options[key] = value
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        with session(ctx) as s:
            project_id = project or s.conn.project
            if not project_id:
                fail("give --project (or a project in ORCH_PROJECT or the profile)", EXIT_USAGE)
            payload: dict[str, Any] = {"description": description, "project_id": project_id}
            payload["options"] = options
            if priority:
                payload["priority"] = priority.value
            accepted = s.api.post("/tasks", payload, headers=headers)
            task_id = accepted["task_id"]
            if not wait:
                if s.for_people:
                    out.print(task_id)
                else:
                    s.emit(s.api.get(f"/tasks/{task_id}"), show_task)
                return EXIT_OK
            live = s.for_people and sys.stdout.isatty()
            final = follow(s.api, task_id, timeout=timeout, live=live, quiet=not s.for_people)
            s.emit(final, show_task)
            return exit_for(final["status"])

    raise typer.Exit(run(body))


@task_app.command("get")
@client_command
def task_get(
    ctx: typer.Context,
    task_id: str,
) -> None:
    """Show a task."""

    def body() -> None:
        with session(ctx) as s:
            s.emit(s.api.get(f"/tasks/{task_id}"), show_task)

    run(body)


_AGE = re.compile(r"(\d+)\s*([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_when(value: str | None) -> str | None:
    """An RFC 3339 time (without an offset: UTC, as the API reads it) or an age before now
    (``30m``, ``2h``, ``7d``), as the RFC 3339 text the API takes."""
    if value is None:
        return None
    age = _AGE.fullmatch(value.strip())
    if age:
        seconds = int(age[1]) * _UNIT_SECONDS[age[2]]
        return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{value!r}: give a time (2026-12-01T08:00:00Z) or an age (30m, 2h, 7d)"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).isoformat()


@task_app.command("ls")
@client_command
def task_ls(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Option("--project", "-p")] = None,
    status: Annotated[list[TaskStatus] | None, typer.Option("--status", "-s", help="Repeatable.")] = None,
    priority: Annotated[Priority | None, typer.Option("--priority")] = None,
    created_after: Annotated[
        str | None,
        typer.Option(
            "--since",
            "--created-after",
            callback=parse_when,
            help="Created after: a time or an age (2h, 7d).",
        ),
    ] = None,
    created_before: Annotated[
        str | None,
        typer.Option(
            "--until", "--created-before", callback=parse_when, help="Created before: a time or an age."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="Per page.")] = 50,
    offset: Annotated[int | None, typer.Option(min=0, help="Skip this many (or use --cursor).")] = None,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Follow every page.")] = False,
) -> None:
    """List tasks, newest first (every filter of GET /api/v1/tasks, and paging)."""

    def body() -> None:
        filters: dict[str, Any] = {
            "project_id": project,
            "status": [s.value for s in status or []] or None,
            "priority": priority.value if priority else None,
            "created_after": created_after,
            "created_before": created_before,
            "limit": limit,
            "offset": offset,
            "cursor": cursor,
        }
        with session(ctx) as s:
            page = s.api.get("/tasks", **filters)
            if not all_:
                s.emit_page(page, _people_page)
                return
            items: list[dict[str, Any]] = []
            while True:
                items += page["items"]
                if s.fmt is Format.jsonl:  # each page as it comes
                    s.emit_page(page, _people_page)
                if not (page.get("next_cursor") and page["items"]):
                    break
                page = s.api.get("/tasks", **{**filters, "offset": None, "cursor": page["next_cursor"]})
        if s.fmt is not Format.jsonl:
            s.emit({"items": items, "total": len(items)}, _people_page)

    run(body)


def _people_page(page: dict[str, Any]) -> None:
    out.print(_task_table(page["items"]))
    more = "+" if page.get("total_capped") else ""  # the service stops counting at 10,000
    out.print(f"{len(page['items'])} of {page['total']}{more}")
    if page.get("next_cursor"):
        out.print(f"more: --cursor {page['next_cursor']} (or --all)")


@task_app.command("cancel")
@client_command
def task_cancel(
    ctx: typer.Context,
    task_id: str,
    reason: Annotated[str | None, typer.Option(help="Why (kept in the history).")] = None,
) -> None:
    """Cancel a task (and its subtasks)."""

    def body() -> None:
        with session(ctx) as s:
            doc = s.api.post(f"/tasks/{task_id}/cancel", {"reason": reason} if reason else None)
        s.emit(doc, lambda d: out.print(f"{d['task_id']} {d['status']}"))

    run(body)


@task_app.command("history")
@client_command
def task_history(
    ctx: typer.Context,
    task_id: str,
) -> None:
    """Every transition of a task, in order."""

    def people(doc: dict[str, Any]) -> None:
        table = Table(show_edge=False, header_style="bold")
        for col in ("TIME", "FROM", "TO", "CAUSE", "REASON"):
            table.add_column(col, overflow="fold")
        for h in doc["items"]:
            table.add_row(
                _short_time(h["time"]), h["from"] or "-", h["to"], h["cause"] or "", h["reason"] or ""
            )
        out.print(table)

    def body() -> None:
        with session(ctx) as s:
            s.emit_page(s.api.get(f"/tasks/{task_id}/history"), people)

    run(body)


@task_app.command("watch")
@client_command
def task_watch(
    ctx: typer.Context,
    task_id: str,
) -> None:
    """Follow a task's stream until it is final (JSON lines with --json or -o jsonl)."""

    def people(e: dict[str, Any]) -> None:
        data = e["data"]
        if e["event"] == "snapshot":
            out.print(f"{_short_time(data['updated_at'])}  {task_id}  {data['status']}")
        elif e["event"] == "status":
            out.print(
                f"{_short_time(data['time'])}  {data['task_id']}  {data['from']} -> {data['to']}"
                f"  {data.get('reason') or ''}"
            )
        elif e["event"] == "progress":
            out.print(
                f"{_short_time(data['progress'].get('at'))}  {task_id}  {progress_text(data['progress'])}"
            )

    def body() -> int:
        status: str = TaskStatus.PENDING
        with session(ctx) as s:
            for event in s.api.stream(s.api.client.follow_task(task_id)):
                s.emit_event(event.model_dump(), people)
                if event.event == "snapshot":
                    status = event.data["status"]
                elif event.event == "status" and event.data["task_id"] == task_id:
                    status = event.data["to"]
        return exit_for(status)

    raise typer.Exit(run(body))


# -- provenance -------------------------------------------------------------------------
def _provenance(ctx: typer.Context, path: str) -> None:
    with session(ctx) as s:
        s.emit(s.api.get(path), lambda doc: out.print_json(orjson.dumps(doc).decode()))


@provenance_app.command("get")
@client_command
def provenance_get(
    ctx: typer.Context,
    record_id: str,
) -> None:
    """A provenance record."""
    run(lambda: _provenance(ctx, f"/provenance/{record_id}"))


@provenance_app.command("lineage")
@client_command
def provenance_lineage(
    ctx: typer.Context,
    record_id: str,
) -> None:
    """Everything upstream of a record."""
    run(lambda: _provenance(ctx, f"/provenance/{record_id}/lineage"))


@provenance_app.command("impact")
@client_command
def provenance_impact(
    ctx: typer.Context,
    record_id: str,
) -> None:
    """Everything downstream of a record, and the tasks in flight that consume it."""
    run(lambda: _provenance(ctx, f"/provenance/{record_id}/impact"))
