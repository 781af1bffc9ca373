"""The plan checker: what makes a decomposition plan usable, and why one is not."""

from __future__ import annotations

import pytest

from orchestration_service.domain.decomposition import Plan, PlanError, PlannedSubtask, check_plan


def plan(*specs: tuple[str, tuple[str, ...]], depth: int | None = None) -> Plan:
    return Plan(tuple(PlannedSubtask(i, f"do {i}", deps) for i, deps in specs), depth)


def check(p: Plan, *, parent_depth: int = 0, max_depth: int = 5, max_subtasks: int = 20) -> list[str]:
    checked = check_plan(p, parent_depth=parent_depth, max_depth=max_depth, max_subtasks=max_subtasks)
    return [s.id for s in checked.subtasks]


def test_diamond_is_accepted_in_dependency_order() -> None:
    p = plan(("D", ("B", "C")), ("B", ("A",)), ("C", ("A",)), ("A", ()))
    checked = check_plan(p, parent_depth=0, max_depth=5, max_subtasks=20)
    assert [s.id for s in checked.subtasks] == ["A", "B", "C", "D"]
    assert checked.longest_chain == 3
    assert checked.child_depth == 1
    assert checked.roots == ("A",)


def test_independent_subtasks_keep_the_agents_order() -> None:
    assert check(plan(("x", ()), ("a", ()), ("m", ()))) == ["x", "a", "m"]


def test_chain() -> None:
    p = plan(("3", ("2",)), ("2", ("1",)), ("1", ()))
    assert check(p) == ["1", "2", "3"]
    assert check_plan(p, parent_depth=0, max_depth=1, max_subtasks=3).longest_chain == 3


@pytest.mark.parametrize(
    ("p", "kwargs", "why"),
    [
        (plan(), {}, "the plan has no subtasks"),
        (plan(*((str(i), ()) for i in range(21))), {}, "the plan has 21 subtasks, more than the limit of 20"),
        (plan(("A", ()), ("A", ())), {}, "duplicate subtask id 'A'"),
        (plan(("A", ("Z",))), {}, "subtask 'A' depends on unknown subtask 'Z'"),
        (plan(("A", ("A",))), {}, "cycle: subtask 'A' depends on itself"),
        (
            plan(("A", ("B",)), ("B", ("A",)), ("C", ())),
            {},
            "cycle: 'A' -> 'B' -> 'A' (each depends on the next)",
        ),
        (
            plan(("root", ()), ("A", ("root", "C")), ("B", ("A",)), ("C", ("B",)), ("D", ("C",))),
            {},
            "cycle: 'A' -> 'C' -> 'B' -> 'A'",
        ),
        (plan(("A", ())), {"parent_depth": 5}, "subtasks would be at depth 6, deeper than max_depth 5"),
        (
            plan(("A", ()), depth=3),
            {"parent_depth": 3},
            "the plan is 3 levels deep; only 2 of max_depth 5 are left at this task",
        ),
    ],
    ids=[
        "empty",
        "too-many",
        "duplicate",
        "unknown",
        "self-cycle",
        "cycle",
        "cycle-behind-root",
        "depth",
        "plan-depth",
    ],
)
def test_bad_plans_are_rejected_with_the_reason(p: Plan, kwargs: dict[str, int], why: str) -> None:
    with pytest.raises(PlanError) as err:
        check(p, **kwargs)
    assert str(err.value).startswith(why)


def test_depth_limits_are_inclusive() -> None:
    assert check(plan(("A", ())), parent_depth=4, max_depth=5) == ["A"]
    assert check(plan(("A", ()), depth=2), parent_depth=3, max_depth=5) == ["A"]
    assert check(plan(*((str(i), ()) for i in range(20)))) == [str(i) for i in range(20)]


def test_empty_description_is_rejected() -> None:
    with pytest.raises(PlanError, match="subtask 'A' has an empty description"):
        check(Plan((PlannedSubtask("A", "  "),)))
