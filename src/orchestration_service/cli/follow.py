"""Following a task to its final state over its stream (``task submit --wait``, ``task retry
--wait``): a live status line on a terminal, with the worker's progress."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live

from orchestration_service.cli.client import EXIT_TIMEOUT, Api, fail
from orchestration_service.domain.lifecycle import FINAL_STATES, TaskStatus

FINAL = frozenset(s.value for s in FINAL_STATES)


def progress_text(p: dict[str, Any]) -> str:
    """``42% parsing (worker-7)``: what a person reads of a task's progress."""
    parts = []
    if p.get("value") is not None:
        parts.append(f"{p['value'] * 100:.0f}%")
    if p.get("message"):
        parts.append(str(p["message"]))
    if p.get("worker_id"):
        parts.append(f"({p['worker_id']})")
    return " ".join(parts) or "alive"


def follow(client: Api, task_id: str, *, timeout: float | None, live: bool, quiet: bool) -> dict[str, Any]:
    """Follow the task stream until the task is final; the final document. ``live``: a status
    line on stderr; else, unless ``quiet``, each progress report as a line on stderr."""
    started = time.monotonic()
    doc: dict[str, Any] = client.get(f"/tasks/{task_id}")
    err = Console(stderr=True, highlight=False)

    def line() -> str:
        subs = doc.get("subtasks") or []
        done = sum(1 for s in subs if s["status"] == TaskStatus.COMPLETED)
        sub = f"  subtasks {done}/{len(subs)}" if subs else ""
        progress = doc.get("progress")
        shown = f"  {progress_text(progress)}" if progress and doc["status"] == "running" else ""
        return f"[bold]{task_id}[/bold]  {doc['status']}{sub}{shown}  {time.monotonic() - started:.0f}s"

    display = Live(line(), console=err, refresh_per_second=4, transient=True) if live else None
    if display:
        display.start()
    try:
        if doc["status"] in FINAL:
            return doc
        # The client library's stream: it resumes from the last id after a dropped connection
        # and ends at the task's final state.
        for event in client.stream(client.client.follow_task(task_id, timeout=timeout)):
            data = event.data
            if event.event == "snapshot":
                doc = data
            elif event.event == "progress":
                doc["progress"] = data["progress"]
                if not display and not quiet:
                    err.print(f"{task_id}  progress {progress_text(data['progress'])}")
            elif event.event == "status" and data.get("task_id") == task_id:
                doc = data["task"]
            elif event.event == "status":  # a subtask's: the parent's summary changed
                doc = client.get(f"/tasks/{task_id}")
            if display:
                display.update(line())
    except TimeoutError:
        fail(f"task {task_id} is still {doc['status']} after {timeout:g}s", EXIT_TIMEOUT)
    finally:
        if display:
            display.stop()
    return doc
