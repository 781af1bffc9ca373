"""The output formats: table for people, json (one document), jsonl (a line per item), yaml."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from orchestration_service.cli.output import Format, emit, emit_event, emit_page

PAGE = {"items": [{"task_id": "a", "n": 1}, {"task_id": "b", "n": 2}], "total": 2, "next_cursor": None}


def people(doc: Any) -> None:
    print(f"people: {len(doc['items'])} items")


def test_table_is_the_commands_own_rendering(capsys: pytest.CaptureFixture[str]) -> None:
    emit_page(PAGE, Format.table, people)
    assert capsys.readouterr().out == "people: 2 items\n"


def test_json_is_one_document_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    emit_page(PAGE, Format.json, people)
    text = capsys.readouterr().out
    assert text.count("\n") == 1 and json.loads(text) == PAGE


def test_jsonl_prints_a_lists_items_a_line_each(capsys: pytest.CaptureFixture[str]) -> None:
    emit_page(PAGE, Format.jsonl, people)
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == PAGE["items"]
    emit({"task_id": "a"}, Format.jsonl, people)  # a single document: one line
    assert json.loads(capsys.readouterr().out) == {"task_id": "a"}


def test_yaml_keeps_the_documents_order_and_text(capsys: pytest.CaptureFixture[str]) -> None:
    doc = {"z": "é", "a": [1, {"b": None}]}
    emit(doc, Format.yaml, people)
    text = capsys.readouterr().out
    assert yaml.safe_load(text) == doc
    assert text.index("z:") < text.index("a:") and "é" in text


def test_a_streams_events_are_lines_or_yaml_documents(capsys: pytest.CaptureFixture[str]) -> None:
    for fmt in (Format.json, Format.jsonl):
        emit_event({"seq": 1}, fmt, people)
        emit_event({"seq": 2}, fmt, people)
        assert [json.loads(x) for x in capsys.readouterr().out.splitlines()] == [{"seq": 1}, {"seq": 2}]
    emit_event({"seq": 1}, Format.yaml, people)
    emit_event({"seq": 2}, Format.yaml, people)
    assert list(yaml.safe_load_all(capsys.readouterr().out)) == [{"seq": 1}, {"seq": 2}]
