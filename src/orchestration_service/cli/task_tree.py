"""``task tree ID``: a task and its subtasks, all levels, drawn as a tree (HTTP only)."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from rich.tree import Tree

from orchestration_service.cli.client import run
from orchestration_service.cli.commands import task_app
from orchestration_service.cli.output import out
from orchestration_service.cli.session import (
    client_command,
    session,
)

STATUS_STYLE = {
    "completed": "green",
    "failed": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "validating": "cyan",
    "decomposing": "magenta",
}


def _label(node: dict[str, Any], names: dict[str, str]) -> str:
    status = node["status"]
    style = STATUS_STYLE.get(status, "white")
    text = f"[{style}]{status}[/] {escape(node['description'][:80])}  [dim]{node['task_id']}[/]"
    if node.get("depends_on"):
        after = ", ".join(names.get(d, d) for d in node["depends_on"])
        text += f"  [dim]after {escape(after)}[/]"
    return text


def _names(node: dict[str, Any], into: dict[str, str]) -> dict[str, str]:
    """Short names of the nodes, for "after …": the first words of each description."""
    into[node["task_id"]] = " ".join(node["description"].split()[:4])
    for child in node["children"]:
        _names(child, into)
    return into


def draw(doc: dict[str, Any]) -> Tree:
    names = _names(doc, {})

    def add(branch: Tree, node: dict[str, Any]) -> None:
        for child in node["children"]:
            add(branch.add(_label(child, names)), child)

    tree = Tree(_label(doc, names))
    add(tree, doc)
    return tree


@task_app.command("tree")
@client_command
def task_tree(
    ctx: typer.Context,
    task_id: str,
) -> None:
    """Show a task and its subtasks, all levels, as a tree."""

    def people(doc: dict[str, Any]) -> None:
        out.print(draw(doc))
        more = " (cut: more subtasks exist)" if doc.get("truncated") else ""
        out.print(f"{doc['subtask_count']} subtasks{more}")

    def body() -> None:
        with session(ctx) as s:
            s.emit(s.api.get(f"/tasks/{task_id}/tree"), people)

    run(body)
