"""RabbitMQ topic matching: words split on '.', `*` is one word, `#` zero or more.

Matching simulates the pattern as an NFA over pattern positions (the set of positions the
key's prefix can have reached), so it costs O(pattern words x key words) whatever the
pattern: a backtracking matcher explodes on patterns with many `#` words (issue 16).
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=4096)
def _split(pattern: str) -> tuple[str, ...]:
    words: list[str] = []
    for word in pattern.split("."):
        # `#.#` matches what `#` matches: a run of `#` is one `#`.
        if word == "#" and words and words[-1] == "#":
            continue
        words.append(word)
    return tuple(words)


def topic_matches(pattern: str, routing_key: str) -> bool:
    return match_words(_split(pattern), routing_key.split("."))


def _closure(p: tuple[str, ...], states: set[int]) -> set[int]:
    """Add the positions reachable without consuming a word: past a `#` (zero words).

    A walk stops at a position already reached (the walk that reached it goes on from
    there), so the whole closure costs O(len(p)).
    """
    out = set(states)
    end = len(p)
    for i in states:
        while i < end and p[i] == "#":
            i += 1
            if i in out:
                break
            out.add(i)
    return out


def match_words(p: tuple[str, ...], key: list[str]) -> bool:
    """Whether the pattern words ``p`` match the key words ``key``.

    A state ``i`` means: the key read so far is matched by ``p[:i]``. Each key word moves
    every state at most one step (or keeps it, on a `#`), so one word costs O(len(p)).
    """
    end = len(p)
    states = _closure(p, {0})
    for word in key:
        nxt: set[int] = set()
        for i in states:
            if i == end:
                continue
            head = p[i]
            if head == "#":
                nxt.add(i)  # `#` takes this word and may take more
            elif head == "*" or head == word:
                nxt.add(i + 1)
        if not nxt:
            return False
        states = _closure(p, nxt)
    return end in states


# Bounds of the patterns a client may send (GET /api/v1/events?type=): matching is linear
# in pattern x key, and these keep one request's share of a replay small.
MAX_PATTERNS = 20
MAX_PATTERN_LENGTH = 255
MAX_PATTERN_WORDS = 32


def pattern_problem(patterns: list[str]) -> str | None:
    """Why these client patterns are refused, or None if they are within the bounds."""
    if len(patterns) > MAX_PATTERNS:
        return f"at most {MAX_PATTERNS} type patterns per request (got {len(patterns)})"
    for p in patterns:
        if len(p) > MAX_PATTERN_LENGTH:
            return f"a type pattern has at most {MAX_PATTERN_LENGTH} characters (got {len(p)})"
        words = p.count(".") + 1
        if words > MAX_PATTERN_WORDS:
            return f"a type pattern has at most {MAX_PATTERN_WORDS} words (got {words})"
    return None
