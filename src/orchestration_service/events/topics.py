"""RabbitMQ topic matching: words split on '.', `*` is one word, `#` zero or more."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=4096)
def _split(pattern: str) -> tuple[str, ...]:
    return tuple(pattern.split("."))


def topic_matches(pattern: str, routing_key: str) -> bool:
    return _match(_split(pattern), tuple(routing_key.split(".")))


def _match(p: tuple[str, ...], k: tuple[str, ...]) -> bool:
    if not p:
        return not k
    head, rest = p[0], p[1:]
    if head == "#":
        return any(_match(rest, k[i:]) for i in range(len(k) + 1))
    if not k:
        return False
    return (head == "*" or head == k[0]) and _match(rest, k[1:])
