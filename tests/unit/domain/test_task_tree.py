"""The pure rules of a task tree: which subtask is planned again, the cap on a whole tree,
the waits a parent hands down, and the nested shape of the tree."""

from __future__ import annotations

import uuid

import pytest

from orchestration_service.domain.task_tree import (
    TreeRow,
    build_tree,
    cap_breach,
    inherited_dependencies,
    wants_nested_plan,
)


@pytest.mark.parametrize(
    ("context", "wanted"),
    [
        ({"subtask": {"plan_id": "a", "is_atomic": False}}, True),
        ({"subtask": {"plan_id": "a", "is_atomic": True}}, False),
        ({"subtask": {"plan_id": "a"}}, False),  # unsaid: atomic (the plan's default)
        ({"subtask": {"is_atomic": "false"}}, False),  # only the agent's boolean counts
        ({"subtask": None}, False),
        ({}, False),
        (None, False),
    ],
)
def test_only_a_subtask_marked_not_atomic_is_planned_again(context: object, wanted: bool) -> None:
    assert wants_nested_plan(context) is wanted  # type: ignore[arg-type]


def test_the_cap_counts_the_whole_tree() -> None:
    assert cap_breach(existing=0, planned=100, cap=100) is None
    assert cap_breach(existing=98, planned=2, cap=100) is None
    assert cap_breach(existing=98, planned=3, cap=100) == (
        "the task tree would have 101 subtasks (98 already, 3 planned), "
        "more than routing.max_total_subtasks 100"
    )
    assert cap_breach(existing=0, planned=5, cap=4) is not None  # a top plan alone can breach it


def test_a_parents_waits_pass_to_its_subtasks_that_wait_for_no_sibling() -> None:
    r1, r2, d1, d2 = (uuid.uuid4() for _ in range(4))
    assert inherited_dependencies([r1, r2], [d1, d2]) == [
        {"task_id": r1, "depends_on_id": d1},
        {"task_id": r1, "depends_on_id": d2},
        {"task_id": r2, "depends_on_id": d1},
        {"task_id": r2, "depends_on_id": d2},
    ]
    assert inherited_dependencies([r1], []) == []


def _row(name: str, parent: TreeRow | None, ids: dict[str, uuid.UUID]) -> TreeRow:
    ids[name] = uuid.uuid4()
    return TreeRow(ids[name], None if parent is None else parent.id, "pending", name)


def test_build_tree_nests_rows_and_keeps_sibling_waits() -> None:
    ids: dict[str, uuid.UUID] = {}
    root = _row("root", None, ids)
    api = _row("api", root, ids)
    ui = _row("ui", root, ids)
    schema = _row("schema", api, ids)
    handlers = _row("handlers", api, ids)
    comps = _row("components", ui, ids)
    outside = uuid.uuid4()  # a sibling of the top task: not in this tree
    deps = {
        root.id: [outside],
        ui.id: [api.id],
        handlers.id: [schema.id],
        comps.id: [api.id],  # inherited from its parent: not a sibling, not listed
    }
    tree = build_tree(root, [api, ui, schema, handlers, comps], deps)
    assert tree["task_id"] == root.id and tree["depends_on"] == [outside]
    assert [c["description"] for c in tree["children"]] == ["api", "ui"]
    api_node, ui_node = tree["children"]
    assert [c["description"] for c in api_node["children"]] == ["schema", "handlers"]
    assert ui_node["depends_on"] == [api.id]
    assert api_node["children"][1]["depends_on"] == [schema.id]
    assert ui_node["children"][0]["depends_on"] == []
    assert ui_node["children"][0]["children"] == []
    assert set(tree) == {"task_id", "status", "description", "depends_on", "children"}


def test_build_tree_drops_rows_whose_parent_was_cut_off() -> None:
    ids: dict[str, uuid.UUID] = {}
    root = _row("root", None, ids)
    a = _row("a", root, ids)
    missing = TreeRow(uuid.uuid4(), a.id, "pending", "not returned")
    orphan = _row("orphan", missing, ids)
    tree = build_tree(root, [a, orphan], {})
    assert [c["description"] for c in tree["children"]] == ["a"]
    assert tree["children"][0]["children"] == []
