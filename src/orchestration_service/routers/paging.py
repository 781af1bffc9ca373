"""Paging shared by the list routes: the query parameters, the keyset cursor and the page
answer (``items``, ``total`` counted up to a cap, ``total_capped``, ``next_cursor``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Protocol

from fastapi import Query

from orchestration_service.domain.errors import ValidationFailed
from orchestration_service.domain.paging import MAX_OFFSET
from orchestration_service.domain.provenance import BadCursor, decode_cursor, encode_cursor

Cursor = Annotated[
    str | None,
    Query(
        max_length=1024,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="`next_cursor` of the previous page (keyset: as fast on page 1,000 as on page 1).",
    ),
]
PageLimit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[
    int,
    Query(ge=0, le=MAX_OFFSET, description=f"At most {MAX_OFFSET:,}; use `cursor` to page further."),
]


class ListPage(Protocol):
    @property
    def rows(self) -> Sequence[Mapping[Any, Any]]: ...
    @property
    def total(self) -> int: ...
    @property
    def total_capped(self) -> bool: ...
    @property
    def has_more(self) -> bool: ...


def keyset_after(cursor: str | None, offset: int, *, uuid_ids: bool = True) -> tuple[datetime, Any] | None:
    """The position a ``cursor`` names (None: start at ``offset``); 422 for both or a bad one."""
    if cursor is None:
        return None
    if offset:
        raise ValidationFailed(
            "use either cursor or offset",
            extra={"errors": [{"field": "offset", "message": "not with cursor"}]},
        )
    try:
        return decode_cursor(cursor, uuid_ids=uuid_ids)
    except BadCursor as exc:
        raise ValidationFailed(
            f"cursor: {exc}", extra={"errors": [{"field": "cursor", "message": str(exc)}]}
        ) from None


def page_answer(
    items: list[dict[str, Any]],
    page: ListPage | None,
    *,
    limit: int,
    offset: int,
    time_key: str = "created_at",
) -> dict[str, Any]:
    """The answer of a list route; ``page`` None: nothing is visible (an empty page)."""
    last = page.rows[-1] if page is not None and page.rows else None
    return {
        "items": items,
        "total": page.total if page is not None else 0,
        "total_capped": page.total_capped if page is not None else False,
        "limit": limit,
        "offset": offset,
        "next_cursor": encode_cursor(last[time_key], last["id"]) if page and page.has_more and last else None,
    }
