"""Which database failures are retried (``db.errors``), whatever driver raised them."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as SATimeoutError

from orchestration_service.db import errors
from orchestration_service.db.errors import (
    CONFLICT_ATTEMPTS,
    is_conflict,
    is_connection_lost,
    is_transient,
    retry_conflicts,
)
from orchestration_service.http import install_error_handlers


class _AdaptedError(Exception):
    """Like SQLAlchemy's asyncpg adapter error: carries the driver's SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def wrapped(sqlstate: str) -> DBAPIError:
    return DBAPIError("UPDATE tasks …", None, _AdaptedError(sqlstate))


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
        asyncpg.exceptions.SerializationError("could not serialize access"),
        asyncpg.exceptions.AdminShutdownError("terminating connection"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.TooManyConnectionsError("too many clients"),
        asyncpg.exceptions.LockNotAvailableError("lock timeout"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"),
        wrapped("40P01"),
        wrapped("08006"),
        OperationalError("SELECT 1", None, Exception("unable to open database file")),
        ConnectionRefusedError(111, "refused"),
        TimeoutError(),  # a statement's command_timeout, a connect or asyncpg pool acquire timeout
        # Issue 21: no free connection in SQLAlchemy's pool within pool_timeout, and a
        # statement PostgreSQL cancelled at statement_timeout (the database slow or away).
        SATimeoutError("QueuePool limit of size 10 overflow 5 reached, connection timed out"),
        asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"),
        wrapped("57014"),
    ],
    ids=lambda e: type(e).__name__ + ":" + (errors.sqlstate_of(e) or "-"),
)
def test_transient_failures(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        asyncpg.exceptions.UndefinedColumnError("column x does not exist"),
        IntegrityError("INSERT …", None, _AdaptedError("23505")),
        wrapped("22P05"),  # untranslatable character: the data, not the database
        ValueError("a bug"),
    ],
    ids=lambda e: type(e).__name__ + ":" + (errors.sqlstate_of(e) or "-"),
)
def test_failures_of_the_work_itself_are_not_transient(exc: BaseException) -> None:
    assert not is_transient(exc)


def _adapter_error(message: str) -> BaseException:
    """What SQLAlchemy's asyncpg adapter raises, unwrapped, when the service calls it
    directly (``Transaction.driver`` starting the transaction) on a dropped connection."""
    try:
        try:
            raise asyncpg.exceptions.InterfaceError(message)
        except asyncpg.exceptions.InterfaceError as cause:
            raise AsyncAdapt_asyncpg_dbapi.InterfaceError(message, cause) from cause
    except AsyncAdapt_asyncpg_dbapi.InterfaceError as exc:
        return exc


@pytest.mark.parametrize(
    "exc",
    [
        _adapter_error("connection is closed"),
        _adapter_error("cannot call Transaction.rollback(): the underlying connection is closed"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        ConnectionResetError(104, "Connection reset by peer"),
        OSError(113, "No route to host"),
        asyncio.IncompleteReadError(b"", 5),
        asyncpg.exceptions.InternalClientError(
            "cannot switch to state 15; another operation (2) is in progress"
        ),
    ],
    ids=lambda e: type(e).__name__ + ":" + str(e)[:30],
)
def test_a_lost_connection_is_transient(exc: BaseException) -> None:
    # A PostgreSQL restart during event handling: the event is retried, never dead-lettered.
    assert is_connection_lost(exc)
    assert is_transient(exc)


def test_an_error_merely_raised_while_a_connection_was_lost_is_not_transient() -> None:
    bug = ValueError("a bug in the error path")
    bug.__context__ = ConnectionResetError(104, "reset")  # raised while handling, not from it
    assert not is_transient(bug)


def test_conflicts_are_deadlocks_and_serialization_failures_only() -> None:
    assert is_conflict(asyncpg.exceptions.DeadlockDetectedError("x"))
    assert is_conflict(wrapped("40001"))
    assert not is_conflict(asyncpg.exceptions.AdminShutdownError("x"))
    assert not is_conflict(OperationalError("x", None, Exception("gone")))


class Failing:
    """Work that raises ``exc`` on its first ``times`` calls, then answers "done"."""

    def __init__(self, exc: BaseException, times: int) -> None:
        self.exc, self.times, self.calls = exc, times, 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.times:
            raise self.exc
        return "done"


async def test_retry_conflicts_runs_the_work_again_until_it_succeeds() -> None:
    work = Failing(asyncpg.exceptions.DeadlockDetectedError("deadlock detected"), times=2)
    assert await retry_conflicts(work, what="test") == "done"
    assert work.calls == 3


async def test_retry_conflicts_gives_up_and_leaves_other_errors_alone() -> None:
    deadlocks = Failing(asyncpg.exceptions.DeadlockDetectedError("deadlock detected"), times=99)
    with pytest.raises(asyncpg.exceptions.DeadlockDetectedError):
        await retry_conflicts(deadlocks, what="test")
    assert deadlocks.calls == CONFLICT_ATTEMPTS

    shuts_down = Failing(asyncpg.exceptions.AdminShutdownError("terminating connection"), times=99)
    with pytest.raises(asyncpg.exceptions.AdminShutdownError):
        await retry_conflicts(shuts_down, what="test")
    assert shuts_down.calls == 1  # transient but not a conflict: the caller decides (503, redelivery)


async def test_http_answers_a_transient_failure_with_503_and_a_bug_with_500() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/busy")
    async def busy() -> None:
        raise asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already")

    @app.get("/bug")
    async def bug() -> None:
        raise ValueError("a bug")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        busy_r = await client.get("/busy")
        bug_r = await client.get("/bug")
    assert busy_r.status_code == 503
    assert busy_r.headers["content-type"].startswith("application/problem+json")
    assert busy_r.headers["retry-after"] == "1"
    assert busy_r.json()["type"].endswith(":service-unavailable")
    assert bug_r.status_code == 500
    assert bug_r.json()["type"].endswith(":internal-error")


def test_a_pool_checkout_timeout_is_transient() -> None:
    """Found by the fault-injection suite (PostgreSQL blackholed): every pooled connection
    waited on a database that did not answer, the next handler's checkout timed out, and a
    valid ``task.output.created`` / ``task.rejected`` was dead-lettered as a crash."""
    exc = SATimeoutError("QueuePool limit of size 10 overflow 5 reached, connection timed out, timeout 30.00")
    assert is_transient(exc)
