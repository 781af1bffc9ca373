"""``task retry``: run a failed or cancelled task again (registered on ``task_app``)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from orchestration_service.cli.client import EXIT_OK, run
from orchestration_service.cli.commands import exit_for, show_task, task_app
from orchestration_service.cli.follow import follow
from orchestration_service.cli.output import out
from orchestration_service.cli.session import (
    client_command,
    session,
)


@task_app.command("retry")
@client_command
def task_retry(
    ctx: typer.Context,
    task_id: str,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the task until it is final.")] = False,
    timeout: Annotated[
        float | None, typer.Option(help="With --wait: give up after S seconds (exit 4).")
    ] = None,
) -> None:
    """Run a failed or cancelled task again (of a decomposed one, the failed and cancelled subtasks).

    Exit 0 when accepted (or, with --wait, completed); 1 failed, or not retryable (409); 3 cancelled;
    4 timeout."""

    def body() -> int:
        with session(ctx) as s:
            doc = s.api.post(f"/tasks/{task_id}/retry", None)
            if not wait:
                s.emit(doc, lambda d: out.print(f"{d['task_id']} {d['status']}"))
                return EXIT_OK
            live = s.for_people and sys.stdout.isatty()
            final = follow(s.api, doc["task_id"], timeout=timeout, live=live, quiet=not s.for_people)
            s.emit(final, show_task)
            return exit_for(final["status"])

    raise typer.Exit(run(body))
