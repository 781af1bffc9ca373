"""Client commands: ``task``, ``provenance``, ``events`` (``project`` is ``cli/projects.py``). HTTP only."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from orchestration_service.cli.client import (
    DEFAULT_URL,
    EXIT_CANCELLED,
    EXIT_ERROR,
    EXIT_OK,
    api,
    run,
)
from orchestration_service.cli.follow import follow, progress_text
from orchestration_service.domain.lifecycle import FINAL_STATES, Priority, TaskStatus

Url = Annotated[str, typer.Option("--url", envvar="ORCH_URL", help="Service base URL.")]
ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", envvar="ORCH_API_KEY", help="Sent as a bearer token.", show_default=False),
]
AsJson = Annotated[
    bool, typer.Option("--json", help="Machine-readable output (JSON; JSON lines for streams).")
]

task_app = typer.Typer(help="Submit, inspect and follow tasks.", no_args_is_help=True)
provenance_app = typer.Typer(help="Provenance records and their graph.", no_args_is_help=True)
events_app = typer.Typer(help="The event feed.", no_args_is_help=True)

# Piped output (scripts, grep) gets whole lines rather than a table cut to 80 columns.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 240)
FINAL = frozenset(s.value for s in FINAL_STATES)


def emit_json(doc: Any) -> None:
    sys.stdout.write(orjson.dumps(doc).decode() + "\n")
    sys.stdout.flush()


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
def task_submit(
    description: Annotated[str, typer.Argument(help="What to do.")],
    project: Annotated[str, typer.Option("--project", "-p", help="Project id.")],
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
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Submit a task. Exit 0 when accepted (or, with --wait, completed); 1 failed; 3 cancelled; 4 timeout."""

    def body() -> int:
        options: dict[str, Any] = {"decompose": decompose}
        for key, value in (("qa_profile", qa_profile), ("domain", domain), ("tier", tier)):
            if value:
                options[key] = value
        payload: dict[str, Any] = {"description": description, "project_id": project, "options": options}
        if priority:
            payload["priority"] = priority.value
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        with api(url, api_key) as client:
            accepted = client.post("/tasks", payload, headers=headers)
            task_id = accepted["task_id"]
            if not wait:
                if as_json:
                    emit_json(client.get(f"/tasks/{task_id}"))
                else:
                    out.print(task_id)
                return EXIT_OK
            final = follow(
                client, task_id, timeout=timeout, live=not as_json and sys.stdout.isatty(), quiet=as_json
            )
            if as_json:
                emit_json(final)
            else:
                show_task(final)
            return exit_for(final["status"])

    raise typer.Exit(run(body))


@task_app.command("get")
def task_get(task_id: str, url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """Show a task."""

    def body() -> None:
        with api(url, api_key) as client:
            doc = client.get(f"/tasks/{task_id}")
        emit_json(doc) if as_json else show_task(doc)

    run(body)


@task_app.command("ls")
def task_ls(
    project: Annotated[str | None, typer.Option("--project", "-p")] = None,
    status: Annotated[list[str] | None, typer.Option("--status", "-s", help="Repeatable.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """List tasks, newest first."""

    def body() -> None:
        params: list[tuple[str, str]] = [("limit", str(limit))]
        if project:
            params.append(("project_id", project))
        params += [("status", s) for s in status or []]
        with api(url, api_key) as client:
            page = client.request("GET", "/tasks", params=params)
        if as_json:
            emit_json(page)
            return
        out.print(_task_table(page["items"]))
        more = "+" if page.get("total_capped") else ""  # the service stops counting at 10,000
        out.print(f"{len(page['items'])} of {page['total']}{more}")

    run(body)


@task_app.command("cancel")
def task_cancel(
    task_id: str,
    reason: Annotated[str | None, typer.Option(help="Why (kept in the history).")] = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Cancel a task (and its subtasks)."""

    def body() -> None:
        with api(url, api_key) as client:
            doc = client.post(f"/tasks/{task_id}/cancel", {"reason": reason} if reason else None)
        emit_json(doc) if as_json else out.print(f"{doc['task_id']} {doc['status']}")

    run(body)


@task_app.command("history")
def task_history(
    task_id: str, url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False
) -> None:
    """Every transition of a task, in order."""

    def body() -> None:
        with api(url, api_key) as client:
            doc = client.get(f"/tasks/{task_id}/history")
        if as_json:
            emit_json(doc)
            return
        table = Table(show_edge=False, header_style="bold")
        for col in ("TIME", "FROM", "TO", "CAUSE", "REASON"):
            table.add_column(col, overflow="fold")
        for h in doc["items"]:
            table.add_row(
                _short_time(h["time"]), h["from"] or "-", h["to"], h["cause"] or "", h["reason"] or ""
            )
        out.print(table)

    run(body)


@task_app.command("watch")
def task_watch(task_id: str, url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False) -> None:
    """Follow a task's stream until it is final (JSON lines with --json)."""

    def body() -> int:
        with api(url, api_key) as client, client.sse(f"/tasks/{task_id}/stream") as source:
            status: str = TaskStatus.PENDING
            for sse in source.iter_sse():
                if not sse.data:
                    continue
                data = orjson.loads(sse.data)
                if as_json:
                    emit_json({"id": sse.id, "event": sse.event, "data": data})
                elif sse.event == "snapshot":
                    status = data["status"]
                    out.print(f"{_short_time(data['updated_at'])}  {task_id}  {status}")
                else:
                    out.print(
                        f"{_short_time(data['time'])}  {data['task_id']}  {data['from']} -> {data['to']}"
                        f"  {data.get('reason') or ''}"
                    )
                if sse.event == "status" and data["task_id"] == task_id:
                    status = data["to"]
        return exit_for(status)

    raise typer.Exit(run(body))


# -- provenance -------------------------------------------------------------------------
def _show_json(doc: Any, as_json: bool) -> None:
    if as_json:
        emit_json(doc)
    else:
        out.print_json(orjson.dumps(doc).decode())


@provenance_app.command("get")
def provenance_get(
    record_id: str, url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False
) -> None:
    """A provenance record."""
    run(lambda: _provenance(url, api_key, f"/provenance/{record_id}", as_json))


@provenance_app.command("lineage")
def provenance_lineage(
    record_id: str, url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False
) -> None:
    """Everything upstream of a record."""
    run(lambda: _provenance(url, api_key, f"/provenance/{record_id}/lineage", as_json))


@provenance_app.command("impact")
def provenance_impact(
    record_id: str, url: Url = DEFAULT_URL, api_key: ApiKey = None, as_json: AsJson = False
) -> None:
    """Everything downstream of a record, and the tasks in flight that consume it."""
    run(lambda: _provenance(url, api_key, f"/provenance/{record_id}/impact", as_json))


def _provenance(url: str, api_key: str | None, path: str, as_json: bool) -> None:
    with api(url, api_key) as client:
        _show_json(client.get(path), as_json)


# -- events -----------------------------------------------------------------------------
@events_app.command("tail")
def events_tail(
    type_: Annotated[
        list[str] | None, typer.Option("--type", "-t", help="Topic pattern; repeatable.")
    ] = None,
    after: Annotated[
        int | None, typer.Option(min=0, help="Replay from after this sequence (0 = all).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after N events.")] = None,
    project: Annotated[str | None, typer.Option("--project", "-p")] = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Follow the event feed (JSON lines with --json)."""

    def body() -> None:
        params: dict[str, Any] = {"after": after, "limit": limit, "project_id": project}
        with api(url, api_key) as client:
            if type_:
                params["type"] = type_
            with client.sse("/events", **params) as source:
                for sse in source.iter_sse():
                    if not sse.data:
                        continue
                    event = orjson.loads(sse.data)
                    if as_json:
                        emit_json({"seq": int(sse.id), "event": sse.event, "cloudevent": event})
                    else:
                        out.print(
                            f"{sse.id:>8}  {_short_time(event.get('time'))}  {sse.event:<24} "
                            f"{event.get('subject') or ''}"
                        )

    run(body)
