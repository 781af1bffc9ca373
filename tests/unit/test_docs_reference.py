"""The reference pages list what the code has: every configuration key
(docs/operating/configuration.md), every metric (docs/operating/metrics.md), every CLI
command, option and exit code (docs/using/cli.md). A key, metric or command added without
its line fails here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from pydantic import BaseModel

from orchestration_service.cli import app
from orchestration_service.cli import client as cli_client
from orchestration_service.config import Settings
from orchestration_service.metrics import Metrics

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _keys(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _keys(ann, f"{prefix}{name}.")
        else:
            yield prefix + name


def test_every_setting_is_in_the_configuration_reference() -> None:
    text = (DOCS / "operating" / "configuration.md").read_text()
    missing = []
    for section, field in Settings.model_fields.items():
        assert isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        heading = f"### `{section}`\n"
        assert heading in text, f"no section {section}"
        table = text.split(heading, 1)[1].split("\n#", 1)[0]
        missing += [f"{section}.{key}" for key in _keys(field.annotation) if f"| `{key}` |" not in table]
    assert not missing, f"not in docs/operating/configuration.md: {missing}"


def test_every_metric_is_in_the_metrics_reference() -> None:
    text = (DOCS / "operating" / "metrics.md").read_text()
    # A counter's family drops its _total suffix; the docs give the name one scrapes.
    names = [m.name + ("_total" if m.type == "counter" else "") for m in Metrics().registry.collect()]
    assert len(names) > 10
    missing = [n for n in names if f"| `{n}` |" not in text]
    assert not missing, f"not in docs/operating/metrics.md: {missing}"


def _commands(group: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every command under a group, by its full path (typer vendors its own click: duck-typed)."""
    for name, command in group.commands.items():
        full = f"{path} {name}".strip()
        if hasattr(command, "commands"):
            if command.callback is not None and command.params:  # a group that lists too
                yield full, command
            yield from _commands(command, full)
        else:
            yield full, command


def test_every_cli_command_and_option_is_in_the_cli_reference() -> None:
    text = (DOCS / "using" / "cli.md").read_text()
    # Global options and profiles have a page of their own (another branch adds it).
    config_page = DOCS / "using" / "cli-config.md"
    options_text = text + (config_page.read_text() if config_page.exists() else "")
    root = typer.main.get_command(app)
    assert hasattr(root, "commands")
    missing = []
    for path, command in [("", root), *_commands(root)]:  # the root: global options
        if path and f"`{path}" not in text:
            missing.append(path)
        for param in command.params:
            for opt in param.opts:
                if opt.startswith("--") and opt != "--help" and opt not in options_text:
                    missing.append(f"{path} {opt}")
    assert not missing, f"not in docs/using/cli.md: {missing}"


def test_the_cli_exit_codes_are_documented() -> None:
    text = (DOCS / "using" / "cli.md").read_text()
    codes = text.split("## Output and exit codes", 1)[1].split("\n## ", 1)[0]
    for name in ("EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_CANCELLED", "EXIT_TIMEOUT"):
        assert re.search(rf"`{getattr(cli_client, name)}`", codes), name
