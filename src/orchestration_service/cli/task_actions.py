"""``task retry``: run a failed or cancelled task again (registered on ``task_app``)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from orchestration_service.cli.client import DEFAULT_URL, EXIT_OK, api, run
from orchestration_service.cli.commands import (
    ApiKey,
    AsJson,
    Url,
    emit_json,
    exit_for,
    out,
    show_task,
    task_app,
)
from orchestration_service.cli.follow import follow


@task_app.command("retry")
def task_retry(
    task_id: str,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the task until it is final.")] = False,
    timeout: Annotated[
        float | None, typer.Option(help="With --wait: give up after S seconds (exit 4).")
    ] = None,
    url: Url = DEFAULT_URL,
    api_key: ApiKey = None,
    as_json: AsJson = False,
) -> None:
    """Run a failed or cancelled task again (of a decomposed one, the failed and cancelled subtasks).

    Exit 0 when accepted (or, with --wait, completed); 1 failed, or not retryable (409); 3 cancelled;
    4 timeout."""

    def body() -> int:
        with api(url, api_key) as client:
            doc = client.post(f"/tasks/{task_id}/retry", None)
            if not wait:
                emit_json(doc) if as_json else out.print(f"{doc['task_id']} {doc['status']}")
                return EXIT_OK
            final = follow(
                client,
                doc["task_id"],
                timeout=timeout,
                live=not as_json and sys.stdout.isatty(),
                quiet=as_json,
            )
            emit_json(final) if as_json else show_task(final)
            return exit_for(final["status"])

    raise typer.Exit(run(body))
