"""The built-in analyzer: deterministic, explained, configurable decisions."""

from __future__ import annotations

import copy

import pytest

from orchestration_service.domain.routing import BuiltinAnalyzer, RulesError
from orchestration_service.services.routing_engine import load_rules

RULES = load_rules(None)


@pytest.fixture
def analyzer() -> BuiltinAnalyzer:
    return BuiltinAnalyzer(RULES)


@pytest.mark.parametrize(
    ("description", "domain", "mode", "tier", "qa"),
    [
        (
            "Create a Python function that calculates fibonacci numbers",
            "code-general",
            "new_project",
            "tiny",
            "consensus",
        ),
        (
            "Fix the crash when the OCR pipeline reads rotated images from the camera",
            "code-vision",
            "fix_bug",
            "large",
            "testing",
        ),
        (
            "Write firmware for the STM32 board that blinks a LED on GPIO 5 every second",
            "code-embedded",
            "new_project",
            "small",
            "testing",
        ),
        (
            "Write the README documentation for the billing module and its public API",
            "documentation",
            "new_project",
            "small",
            "documentation",
        ),
        (
            "Design a landing page layout with a signup form and pricing table",
            "ui-design",
            "new_project",
            "large",
            "human",
        ),
        (
            "Refactor the session module to store password hashes with a modern algorithm",
            "code-general",
            "modify",
            "small",
            "security",
        ),
        (
            "Design the architecture of a distributed job scheduler with leader election",
            "code-general",
            "new_project",
            "frontier",
            "consensus",
        ),
    ],
)
def test_descriptions_route_as_expected(
    analyzer: BuiltinAnalyzer, description: str, domain: str, mode: str, tier: str, qa: str
) -> None:
    d = analyzer.analyze(description)
    assert (d.domain, d.mode, d.tier, d.qa_profile) == (domain, mode, tier, qa)
    assert d.analyzer == "builtin"
    assert f"domain {domain}" in d.reason and f"tier {tier}" in d.reason


def test_same_input_same_decision(analyzer: BuiltinAnalyzer) -> None:
    text = "Add pagination to the orders endpoint"
    assert analyzer.analyze(text) == analyzer.analyze(text)


def test_keywords_match_whole_words_only(analyzer: BuiltinAnalyzer) -> None:
    # "building" contains "ui" but is not the word "ui"; "prefix" contains "fix".
    d = analyzer.analyze("Create a building permit calculator with a prefix tree for lookups")
    assert d.domain == "code-general"
    assert d.mode == "new_project"


def test_pins_win_and_are_recorded(analyzer: BuiltinAnalyzer) -> None:
    d = analyzer.analyze("Fix the camera driver").apply_pins(
        {"tier": "frontier", "qa_profile": "adversarial"}
    )
    assert d.tier == "frontier" and d.qa_profile == "adversarial"
    assert d.pinned == ["tier", "qa_profile"]
    assert "pinned by the submitter" in d.reason


def test_long_multi_step_descriptions_need_decomposition(analyzer: BuiltinAnalyzer) -> None:
    assert analyzer.analyze("Build the parser, then the evaluator, and finally the REPL").needs_decomposition
    assert not analyzer.analyze("Write a fibonacci function").needs_decomposition


def test_bad_rules_are_refused() -> None:
    bad = copy.deepcopy(RULES)
    bad["domains"][0]["domain"] = "cooking"
    with pytest.raises(RulesError, match="cooking"):
        BuiltinAnalyzer(bad)
    with pytest.raises(RulesError):
        BuiltinAnalyzer({"domains": []})


def test_shipped_config_copy_matches_the_packaged_rules() -> None:
    assert load_rules("config/routing-rules.yaml") == RULES
