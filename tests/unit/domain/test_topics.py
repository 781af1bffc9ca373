"""RabbitMQ topic semantics, shared by the in-process bus and the SSE feed filters."""

from __future__ import annotations

import pytest

from orchestration_service.domain.topics import topic_matches


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("task.ready.*", "task.ready.small", True),
        ("task.ready.*", "task.ready", False),
        ("task.ready.*", "task.ready.small.extra", False),
        ("task.#", "task", True),
        ("task.#", "task.status.running", True),
        ("#", "anything.at.all", True),
        ("*.created", "task.created", True),
        ("*.created", "task.output.created", False),
        ("#.created", "task.output.created", True),
        ("task.validated", "task.validated", True),
        ("task.validated", "task.rejected", False),
        ("task.*.created", "task.output.created", True),
    ],
)
def test_topic_matching(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected
