"""The circuit breaker and the validation of Agent/RAG answers (no network)."""

from __future__ import annotations

from enum import Enum
from typing import get_args

import pytest
from pydantic import BaseModel, ValidationError

from orchestration_service.domain.vocabulary import DOMAINS, MODES, QA_PROFILES, TIERS
from orchestration_service.services.agent_client import Analysis, Decomposition, Estimate
from orchestration_service.services.rag_client import RagAnswer
from orchestration_service.services.remote import CircuitBreaker, describe


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_the_threshold_and_half_opens_after_the_cool_down() -> None:
    clock = Clock()
    b = CircuitBreaker(3, 10.0, clock)
    for _ in range(2):
        assert b.allow()
        b.failure()
    assert b.state == "closed"
    b.success()  # a success resets the count
    for _ in range(3):
        assert b.allow()
        b.failure()
    assert b.state == "open" and not b.allow()
    assert b.retry_in() == 10.0
    clock.now += 10
    assert b.state == "half-open"
    assert b.allow()  # one trial
    assert not b.allow()  # and only one
    b.failure()  # the trial failed: open again for the full cool-down
    assert b.state == "open" and b.retry_in() == 10.0
    clock.now += 10
    assert b.allow()
    b.success()
    assert b.state == "closed" and b.allow() and b.failures == 0
    assert b.times_opened == 2


def test_a_cancelled_trial_lets_another_through() -> None:
    clock = Clock()
    b = CircuitBreaker(1, 5.0, clock)
    b.failure()
    clock.now += 5
    assert b.allow() and not b.allow()
    b.release()
    assert b.allow()


def _enum_values(model: type[BaseModel], field: str) -> set[str]:
    annotation = model.model_fields[field].annotation
    (enum,) = [a for a in (*get_args(annotation), annotation) if isinstance(a, type) and issubclass(a, Enum)]
    return {member.value for member in enum}


def test_answer_vocabularies_match_the_domain() -> None:
    # The answers take exactly the domain's vocabulary (domain/vocabulary.py), no copy of it.
    assert _enum_values(Analysis, "mode") == set(MODES)
    assert _enum_values(Analysis, "domain") == set(DOMAINS)
    assert _enum_values(Estimate, "recommended_tier") == set(TIERS)
    assert _enum_values(Analysis, "qa_profile") == set(QA_PROFILES)
    assert _enum_values(Estimate, "qa_profile") == set(QA_PROFILES)
    for tier in TIERS:  # and keep it as plain text
        assert type(Estimate.model_validate({"recommended_tier": tier}).recommended_tier) is str


def test_answers_are_strict_about_what_is_used_and_tolerant_of_extras() -> None:
    ok = Analysis.model_validate_json(
        b'{"mode": "modify", "domain": "ui-design", "needs_decomposition": true,'
        b' "qa_profile": "human", "estimated_complexity": 0.7, "new_field": 1}'
    )
    assert ok.domain == "ui-design" and ok.estimated_complexity == 0.7
    assert Estimate.model_validate_json(b'{"recommended_tier": "large", "confidence": 1}').confidence == 1
    with pytest.raises(ValidationError) as err:
        Estimate.model_validate_json(b'{"recommended_tier": "huge"}')
    assert describe(err.value).startswith("recommended_tier: Input should be")
    with pytest.raises(ValidationError) as err:
        Estimate.model_validate_json(b'{"recommended_tier": "small", "estimated_tokens": "many"}')
    assert describe(err.value).startswith("estimated_tokens")
    with pytest.raises(ValidationError) as err:
        Analysis.model_validate_json(b"{not json")
    assert describe(err.value) == "not JSON"
    with pytest.raises(ValidationError) as err:
        RagAnswer.model_validate_json(b'{"sources": []}')
    assert describe(err.value) == "context: Field required"


def test_plan_ids_may_be_numbers() -> None:
    d = Decomposition.model_validate_json(
        b'{"subtasks": [{"id": 1, "description": "a"}, {"id": 2, "description": "b",'
        b' "dependencies": [1, 1]}], "decomposition_depth": 1}'
    )
    plan = d.plan()
    assert [(s.id, s.dependencies) for s in plan.subtasks] == [("1", ()), ("2", ("1",))]
    with pytest.raises(ValidationError):
        Decomposition.model_validate_json(b'{"subtasks": [{"id": true, "description": "a"}]}')
