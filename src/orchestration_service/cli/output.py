"""How client commands print what they got (``--output``/``-o``): ``table`` for people, and
for scripts ``json`` (one document), ``jsonl`` (a list's items, one per line) and ``yaml``.

A stream (``task watch``, ``events tail``) cannot be one document: there ``json`` and
``jsonl`` both print a line per event (what ``--json`` always did), ``yaml`` a document per
event (``---`` between them).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import orjson
import yaml
from rich.console import Console


class Format(StrEnum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    yaml = "yaml"


People = Callable[[Any], None]

# Piped output (scripts, grep) gets whole lines rather than a table cut to 80 columns.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 240)


def emit_json(doc: Any) -> None:
    sys.stdout.write(orjson.dumps(doc).decode() + "\n")
    sys.stdout.flush()


def yaml_text(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, default_flow_style=False)


def emit(doc: Any, fmt: Format, people: People) -> None:
    """One answer: ``people`` draws it for ``table``."""
    if fmt is Format.table:
        people(doc)
    elif fmt is Format.yaml:
        sys.stdout.write(yaml_text(doc))
        sys.stdout.flush()
    else:
        emit_json(doc)


def emit_page(page: dict[str, Any], fmt: Format, people: People) -> None:
    """A page of a list (``items``, ``total``, …): with ``jsonl``, only the items, a line each."""
    if fmt is Format.jsonl:
        for item in page["items"]:
            emit_json(item)
    else:
        emit(page, fmt, people)


def emit_event(doc: Any, fmt: Format, people: People) -> None:
    """One element of a stream, printed as it arrives."""
    if fmt is Format.yaml:
        sys.stdout.write("---\n" + yaml_text(doc))
        sys.stdout.flush()
    elif fmt is Format.table:
        people(doc)
    else:
        emit_json(doc)
