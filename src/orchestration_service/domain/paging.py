"""Bounds of list answers: what keeps a page cheap however large the tables grow.

A list counts its matches only up to ``LIST_TOTAL_CAP`` (beyond it, ``total_capped`` says
so) and takes an ``offset`` of at most ``MAX_OFFSET``; deeper pages use the keyset
``cursor``, which costs the same at any depth.
"""

from __future__ import annotations

LIST_TOTAL_CAP = 10_000
MAX_OFFSET = 10_000
