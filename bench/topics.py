"""Topic matching cost (``python -m bench.topics``): ~1 KB of ``type`` patterns against a
replay of 10,000 events, as ``GET /api/v1/events?type=…&after=0`` does it (issue 16).

Measures the service's matcher (``domain.topics``, through the feed's ``LogFilter``) and,
for comparison, the backtracking matcher it replaced (kept here). The old one takes minutes
per event on such a pattern: its total
is extrapolated from one timed match per event type, each in a child process stopped after
``--old-cap`` seconds (a stopped one counts as the cap: the total is then a lower bound).

The HTTP edge refuses such a pattern now (at most 255 characters and 32 words); this
measures the matcher itself, which must stay linear whatever it is given.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable
from multiprocessing import Process, Queue

from orchestration_service.services.event_log import LogEntry, LogFilter

EVENT_TYPES = (
    "task.created",
    "task.ready.standard",
    "task.status.running",
    "task.status.validating",
    "task.status.completed",
    "task.completed",
    "artifact.tainted",
    "artifact.suspect",
)


def old_matches(pattern: str, routing_key: str) -> bool:
    """The matcher before issue 16: backtracking on each `#`."""

    def match(p: tuple[str, ...], k: tuple[str, ...]) -> bool:
        if not p:
            return not k
        head, rest = p[0], p[1:]
        if head == "#":
            return any(match(rest, k[i:]) for i in range(len(k) + 1))
        if not k:
            return False
        return (head == "*" or head == k[0]) and match(rest, k[1:])

    return match(tuple(pattern.split(".")), tuple(routing_key.split(".")))


def patterns() -> dict[str, list[str]]:
    """About 1 KB each, matching none of the events (the worst case: every path is tried)."""
    issue = ".".join(["#"] * 80 + ["x"])
    return {
        "one pattern #.#.….x": [".".join(["#"] * 511 + ["x"])],
        "one pattern #.a.#.a.….x": [".".join(["#", "a"] * 255 + ["x"])],
        "the issue's request: 6 patterns of 80 # and x": [issue] * 6,
    }


def events(n: int) -> list[LogEntry]:
    return [LogEntry(i + 1, EVENT_TYPES[i % len(EVENT_TYPES)], None, "p", {}) for i in range(n)]


def run(match: Callable[[LogEntry], bool], entries: list[LogEntry]) -> float:
    started = time.perf_counter()
    for e in entries:
        match(e)
    return time.perf_counter() - started


def _time_old(types: list[str], key: str, out: Queue[float]) -> None:
    # One frame pair per pattern word: at the default limit the old matcher failed with
    # RecursionError past ~500 words; measured here as if it had not.
    sys.setrecursionlimit(100_000)
    started = time.perf_counter()
    any(old_matches(p, key) for p in types)
    out.put(time.perf_counter() - started)


def old_seconds_per_event(types: list[str], key: str, cap: float) -> tuple[float, bool]:
    """(seconds of one old match, whether it finished): in a child process stopped at ``cap``
    seconds, so a match that would run for hours costs ``cap`` (and counts as at least that)."""
    out: Queue[float] = Queue()
    child = Process(target=_time_old, args=(types, key, out), daemon=True)
    child.start()
    child.join(cap)
    if child.is_alive():
        child.terminate()
        child.join()
        return cap, False
    return out.get(), True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.topics", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument(
        "--old-cap", type=float, default=10.0, help="seconds the old matcher may spend per event type"
    )
    args = parser.parse_args(argv)
    entries = events(args.events)
    counts = Counter(e.event_type for e in entries)
    print(f"{args.events:,} events, {len(counts)} types in turn: {', '.join(EVENT_TYPES)}")
    for name, types in patterns().items():
        flt = LogFilter(types=types)
        assert not any(flt.matches(e) for e in entries[: len(EVENT_TYPES)])
        seconds = run(flt.matches, entries)
        words = sum(p.count(".") + 1 for p in types)
        print(f"{name}: {sum(map(len, types))} chars, {words} words")
        per_event = seconds / len(entries) * 1e6
        print(f"  now: {seconds * 1000:.1f} ms for {len(entries):,} events ({per_event:.1f} µs/event)")
        total, capped = 0.0, []
        for key, n in counts.items():
            per, finished = old_seconds_per_event(types, key, args.old_cap)
            total += per * n
            if not finished:
                capped.append(key)
        bound = "at least " if capped else ""
        print(
            f"  old: {bound}{total:,.1f} s for {len(entries):,} events (~{total / 3600:,.1f} h), "
            "extrapolated from one match per event type"
            + (f"; stopped at {args.old_cap:g} s (still running): {', '.join(capped)}" if capped else "")
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
