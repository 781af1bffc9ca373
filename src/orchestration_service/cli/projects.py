"""Client commands of ``project``: list, status, create, get, update, archive, and the
constitution (set from a file, show a version). HTTP only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from orchestration_service.cli.client import CliError, run
from orchestration_service.cli.commands import _short_time
from orchestration_service.cli.output import out
from orchestration_service.cli.session import (
    client_command,
    session,
)
from orchestration_service.domain.lifecycle import Priority
from orchestration_service.domain.vocabulary import QAProfile

project_app = typer.Typer(help="Projects: settings, constitution, status.", no_args_is_help=True)
constitution_app = typer.Typer(
    help="A project's constitution (coding standards for workers).", no_args_is_help=True
)
project_app.add_typer(constitution_app, name="constitution")

MaxConcurrent = Annotated[int | None, typer.Option(help="Tasks in flight at once.", min=1, max=10_000)]
DefaultPriority = Annotated[Priority | None, typer.Option(help="Priority of a task submitted without one.")]
QaProfileOpt = Annotated[QAProfile | None, typer.Option("--qa-profile", help="QA profile of its tasks.")]
Timeout = Annotated[
    int | None, typer.Option("--timeout", help="Seconds an attempt may stay in flight.", min=1)
]
MaxAttempts = Annotated[int | None, typer.Option(help="Attempts before a task fails.", min=1, max=100)]
Reset = Annotated[
    list[str] | None,
    typer.Option(
        "--reset", help="A setting to fall back to the configuration (repeatable).", show_default=False
    ),
]


def _settings(**values: Any) -> dict[str, Any]:
    return {k: (v.value if hasattr(v, "value") else v) for k, v in values.items() if v is not None}


def _show_project(doc: dict[str, Any]) -> None:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("project", doc["project_id"])
    table.add_row("name", doc.get("name") or "-")
    table.add_row("archived", _short_time(doc.get("archived_at")) if doc.get("archived_at") else "no")
    for name, eff in doc["effective_settings"].items():
        value = "-" if eff["value"] is None else str(eff["value"])
        table.add_row(name, f"{value} ({eff['source']})")
    c = doc.get("constitution")
    table.add_row("constitution", f"v{c['version']} sha256 {c['sha256'][:12]}…" if c else "-")
    s = doc["status"]
    table.add_row("tasks", f"{s['total']} ({s['in_flight']} in flight of {s['max_concurrent']})")
    out.print(table)


def _read(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {file}: {exc}") from None


@project_app.command("create")
@client_command
def project_create(
    ctx: typer.Context,
    project: str,
    name: Annotated[str | None, typer.Option(help="A readable name.")] = None,
    description: Annotated[str | None, typer.Option(help="What the project is.")] = None,
    constitution: Annotated[Path | None, typer.Option(help="Markdown file: the constitution.")] = None,
    max_concurrent: MaxConcurrent = None,
    default_priority: DefaultPriority = None,
    qa_profile: QaProfileOpt = None,
    timeout: Timeout = None,
    max_attempts: MaxAttempts = None,
) -> None:
    """Create a project (unset settings fall back to the configuration)."""

    def body() -> None:
        doc: dict[str, Any] = {"project_id": project, "name": name, "description": description}
        if constitution is not None:
            doc["constitution"] = _read(constitution)
        doc["settings"] = _settings(
            max_concurrent=max_concurrent,
            default_priority=default_priority,
            default_qa_profile=qa_profile,
            timeout_default_seconds=timeout,
            max_attempts_default=max_attempts,
        )
        with session(ctx) as s:
            created = s.api.post("/projects", {k: v for k, v in doc.items() if v is not None})
        s.emit(created, _show_project)

    run(body)


@project_app.command("get")
@client_command
def project_get(
    ctx: typer.Context,
    project: str,
) -> None:
    """A project: its settings in effect (and where each comes from), constitution, tasks."""

    def body() -> None:
        with session(ctx) as s:
            s.emit(s.api.get(f"/projects/{project}"), _show_project)

    run(body)


@project_app.command("update")
@client_command
def project_update(
    ctx: typer.Context,
    project: str,
    name: Annotated[str | None, typer.Option(help="A readable name.")] = None,
    description: Annotated[str | None, typer.Option(help="What the project is.")] = None,
    max_concurrent: MaxConcurrent = None,
    default_priority: DefaultPriority = None,
    qa_profile: QaProfileOpt = None,
    timeout: Timeout = None,
    max_attempts: MaxAttempts = None,
    reset: Reset = None,
) -> None:
    """Change a project's name, description or settings; effective at once."""

    def body() -> None:
        settings = _settings(
            max_concurrent=max_concurrent,
            default_priority=default_priority,
            default_qa_profile=qa_profile,
            timeout_default_seconds=timeout,
            max_attempts_default=max_attempts,
        )
        for name_ in reset or []:
            settings[name_] = None
        doc: dict[str, Any] = {k: v for k, v in {"name": name, "description": description}.items() if v}
        if settings:
            doc["settings"] = settings
        with session(ctx) as s:
            changed = s.api.request("PATCH", f"/projects/{project}", json=doc)
        s.emit(changed, _show_project)

    run(body)


@project_app.command("archive")
@client_command
def project_archive(
    ctx: typer.Context,
    project: str,
) -> None:
    """Archive a project: it takes no new tasks (refused while it has unfinished ones)."""

    def body() -> None:
        with session(ctx) as s:
            doc = s.api.request("DELETE", f"/projects/{project}")
        s.emit(doc, lambda d: out.print(f"archived {d['project_id']}"))

    run(body)


@constitution_app.command("set")
@client_command
def constitution_set(
    ctx: typer.Context,
    project: str,
    file: Path,
) -> None:
    """Make FILE (Markdown, up to 64 KiB) the project's constitution: a new version."""

    def body() -> None:
        text = _read(file)
        with session(ctx) as s:
            doc = s.api.request("PATCH", f"/projects/{project}", json={"constitution": text})
        s.emit(
            doc["constitution"],
            lambda c: out.print(f"{project}: constitution v{c['version']} sha256 {c['sha256']}"),
        )

    run(body)


@constitution_app.command("show")
@client_command
def constitution_show(
    ctx: typer.Context,
    project: str,
    version: Annotated[int | None, typer.Option(help="This version (default: the current).", min=1)] = None,
) -> None:
    """Print the project's constitution (its text; --json: with version and sha256)."""

    def body() -> None:
        with session(ctx) as s:
            doc = s.api.get(f"/projects/{project}/constitution", version=version)
        s.emit(doc, lambda d: typer.echo(d["text"], nl=not d["text"].endswith("\n")))

    run(body)


# -- project ----------------------------------------------------------------------------
@project_app.command("ls")
@client_command
def project_ls(
    ctx: typer.Context,
    archived: Annotated[bool, typer.Option("--archived", help="Archived projects too.")] = False,
) -> None:
    """Projects with task counts."""

    def people(doc: dict[str, Any]) -> None:
        table = Table(show_edge=False, header_style="bold")
        for col in ("PROJECT", "TOTAL", "IN FLIGHT", "PENDING", "COMPLETED", "FAILED", "CANCELLED"):
            table.add_column(col)
        for p in doc["items"]:
            c = p["counts"]
            table.add_row(
                p["project_id"],
                str(p["total"]),
                f"{p['in_flight']}/{p['max_concurrent']}",
                str(c["pending"]),
                str(c["completed"]),
                str(c["failed"]),
                str(c["cancelled"]),
            )
        out.print(table)

    def body() -> None:
        with session(ctx) as s:
            s.emit_page(s.api.get("/projects", include_archived="true" if archived else None), people)

    run(body)


@project_app.command("status")
@client_command
def project_status(
    ctx: typer.Context,
    project: str,
) -> None:
    """A project's status summary."""

    def people(doc: dict[str, Any]) -> None:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        table.add_row("project", doc["project_id"])
        table.add_row("in flight", f"{doc['in_flight']} of {doc['max_concurrent']}")
        for state, n in doc["counts"].items():
            table.add_row(state, str(n))
        oldest = doc.get("oldest_waiting_task")
        table.add_row(
            "oldest waiting",
            f"{oldest['task_id']} since {_short_time(oldest['created_at'])}" if oldest else "-",
        )
        median = doc.get("median_execution_time_ms")
        table.add_row("median execution", f"{median} ms" if median is not None else "-")
        out.print(table)

    def body() -> None:
        with session(ctx) as s:
            s.emit(s.api.get(f"/projects/{project}/status"), people)

    run(body)
