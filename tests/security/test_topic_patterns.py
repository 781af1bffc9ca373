"""Issue 16, defect 3: topic patterns cannot stall the process.

The matcher runs in time linear in pattern x key (no backtracking on `#`), keeps RabbitMQ's
semantics (checked against the old backtracking matcher, kept here as the reference), and
the feed refuses too many or too large patterns with 422 problem+json.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

from bench.topics import old_matches
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestration_service.domain.topics import (
    MAX_PATTERN_LENGTH,
    MAX_PATTERN_WORDS,
    MAX_PATTERNS,
    topic_matches,
)
from tests.conftest import Service
from tests.integration.test_http_events import read_feed, wait_for_log
from tests.integration.test_tasks_api import submit

# The old backtracking matcher (exponential on many `#`, fine on small inputs) is the
# reference; the benchmark times it against the new one.
reference_match = old_matches


_WORDS = st.sampled_from(["a", "b", "task", ""])
_PATTERN_WORDS = st.one_of(_WORDS, st.sampled_from(["*", "#"]))


@settings(max_examples=2000, deadline=None)
@given(
    pattern=st.lists(_PATTERN_WORDS, min_size=1, max_size=8).map(".".join),
    key=st.lists(_WORDS, min_size=1, max_size=8).map(".".join),
)
def test_the_matcher_agrees_with_the_reference(pattern: str, key: str) -> None:
    assert topic_matches(pattern, key) == reference_match(pattern, key)


def test_known_cases() -> None:
    assert topic_matches("task.#", "task.status.running")
    assert topic_matches("task.#", "task")
    assert topic_matches("#", "anything.at.all")
    assert topic_matches("task.*.created", "task.output.created")
    assert not topic_matches("task.*", "task.status.running")
    assert topic_matches("#.a.#.a.#", "x.a.y.a.z")
    assert not topic_matches("#.a.#.a.#", "x.a.y")
    assert topic_matches("*.#.*", "a.b")
    assert not topic_matches("*.#.*", "a")


_LIVENESS = """
from orchestration_service.domain.topics import topic_matches
key = ".".join(["w"] * 100)
assert not topic_matches(".".join(["#"] * 80 + ["x"]), key)
assert not topic_matches(".".join(["#", "w"] * 60 + ["x"]), key)
assert topic_matches(".".join(["#", "w"] * 60), key)
"""


def test_many_hashes_against_a_long_key_answer_promptly() -> None:
    """The old matcher takes longer than the age of the universe here; a subprocess so a
    regression fails by the timeout instead of hanging the suite."""
    subprocess.run([sys.executable, "-c", _LIVENESS], check=True, timeout=10)


_REPLAY = """
from orchestration_service.services.event_log import LogEntry, LogFilter
flt = LogFilter(types=[".".join(["#"] * 80 + ["x"])])
entries = [LogEntry(i, "task.status.running", None, "p", {}) for i in range(2000)]
assert not any(flt.matches(e) for e in entries)
"""


def test_a_replay_through_a_filter_with_many_hashes_stays_cheap() -> None:
    # The shape of a replay from after=0: one filter, many events (the old matcher: ~1 s each).
    subprocess.run([sys.executable, "-c", _REPLAY], check=True, timeout=10)


async def feed_status(svc: Service, types: list[str]) -> tuple[int, dict[str, object], str]:
    # Bounded: before the fix these opened a stream that waits for events.
    r = await asyncio.wait_for(
        svc.client.get("/api/v1/events", params={"type": types, "after": 0, "limit": 1}), 30
    )
    body = r.json() if r.headers["content-type"].startswith("application/problem+json") else {}
    return r.status_code, body, r.headers["content-type"]


async def test_too_many_patterns_are_refused(service: Service) -> None:
    status, body, ctype = await feed_status(service, ["task.#"] * (MAX_PATTERNS + 1))
    assert status == 422
    assert ctype.startswith("application/problem+json")
    assert body["type"] == "urn:dats:orchestration:problem:validation-error"
    assert body["errors"] == [{"field": "type", "message": body["errors"][0]["message"]}]  # type: ignore[index]


async def test_a_too_long_pattern_is_refused(service: Service) -> None:
    status, body, _ = await feed_status(service, ["a" * (MAX_PATTERN_LENGTH + 1)])
    assert status == 422
    assert "characters" in str(body["detail"])


async def test_a_pattern_of_too_many_words_is_refused(service: Service) -> None:
    # The attack: 80 `#` words, about a kilobyte with a few patterns.
    status, body, _ = await feed_status(service, [".".join(["#"] * 80)])
    assert status == 422
    assert "words" in str(body["detail"])
    status, body, _ = await feed_status(service, [".".join(["*"] * (MAX_PATTERN_WORDS + 1))])
    assert status == 422


async def test_patterns_at_the_bounds_are_accepted(service: Service) -> None:
    task = await submit(service)
    await wait_for_log(service, 1)
    widest = ".".join(["#"] * (MAX_PATTERN_WORDS - 2) + ["task", "created"])
    alternating = ".".join(["#", "*"] * 2 + ["#"] * (MAX_PATTERN_WORDS - 6) + ["*", "created"])
    assert len(widest) <= MAX_PATTERN_LENGTH and widest.count(".") + 1 == MAX_PATTERN_WORDS
    assert alternating.count(".") + 1 == MAX_PATTERN_WORDS
    patterns = [widest, alternating] * (MAX_PATTERNS // 2)
    # Bounded: a pattern that wrongly matched nothing would leave the stream waiting.
    events = await asyncio.wait_for(read_feed(service, after=0, limit=1, type=patterns), 30)
    assert [e["event"] for e in events] == ["task.created"]
    assert events[0]["data"]["subject"] == str(task["task_id"])
