"""Waiting for a condition itself, with a deadline, instead of sleeping and hoping it
happened meanwhile (a fixed sleep is too short on a busy shared machine, and too long
everywhere else)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

if TYPE_CHECKING:
    from tests.conftest import Service

T = TypeVar("T")


@overload
async def eventually(
    check: Callable[[], Awaitable[T]], *, timeout: float = ..., interval: float = ..., what: str = ...
) -> T: ...
@overload
async def eventually(
    check: Callable[[], T], *, timeout: float = ..., interval: float = ..., what: str = ...
) -> T: ...
async def eventually(
    check: Callable[[], Any],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "the condition",
) -> Any:
    """The first truthy result of ``check`` (sync or async), polled every ``interval``
    seconds; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        value = await result if inspect.isawaitable(result) else result
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g}s for {what} (last: {value!r})")
        await asyncio.sleep(interval)


def eventually_sync(
    check: Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "the condition",
) -> T:
    """:func:`eventually` for synchronous tests (a server process, threads)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g}s for {what} (last: {value!r})")
        time.sleep(interval)


async def all_published(svc: Service) -> bool:
    """Whether the outbox relay has published every event committed so far (a predicate
    for :func:`eventually`: after it, ``bus.published`` holds all the service emitted)."""
    async with svc.container.storage.read() as uow:
        pending, _oldest = await uow.outbox.pending_stats()
    return pending == 0
