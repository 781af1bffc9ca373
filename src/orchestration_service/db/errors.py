"""Which database failures are worth trying again.

Two kinds, told apart by SQLSTATE whichever driver raised them (SQLAlchemy wraps asyncpg's
errors; the hand-written statements in ``repositories.tasks.pg_statements`` raise asyncpg's own):

* **conflicts** — a deadlock or a serialization failure. PostgreSQL aborted this
  transaction so that another could finish; running it again at once normally succeeds.
* **transient** — the conflicts, plus the database being away or overloaded (connection
  lost, shutting down, starting up, too many connections). Retry with backoff; an event is
  never dead-lettered for one of these.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as SATimeoutError

log = logging.getLogger(__name__)
T = TypeVar("T")

CONFLICT_ATTEMPTS = 5  # a unit of work PostgreSQL aborts for a conflict runs at most this often

# 40001 serialization_failure, 40P01 deadlock_detected
CONFLICT_SQLSTATES = frozenset({"40001", "40P01"})

# Whole classes: 08 connection exception, 40 transaction rollback, 53 insufficient
# resources (too many connections, out of memory or disk).
_TRANSIENT_CLASSES = ("08", "40", "53")
# 55P03 lock_not_available (lock_timeout), 57014 query_canceled (statement_timeout: the
# database is slow or unreachable, not the work wrong), 57P01 admin_shutdown, 57P02
# crash_shutdown, 57P03 cannot_connect_now (starting up or in recovery).
_TRANSIENT_SQLSTATES = frozenset({"55P03", "57014", "57P01", "57P02", "57P03"})


def sqlstate_of(exc: BaseException) -> str | None:
    """The SQLSTATE carried by ``exc`` or the driver error under it, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        state = getattr(current, "sqlstate", None)
        if isinstance(state, str) and state:
            return state
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return None


def is_conflict(exc: BaseException) -> bool:
    """A deadlock or serialization failure: the transaction can run again at once."""
    return sqlstate_of(exc) in CONFLICT_SQLSTATES


# The connection is gone or unusable, whichever layer says so. SQLAlchemy's asyncpg adapter
# raises its own InterfaceError unwrapped where the service calls it directly
# (``Transaction.driver``), with asyncpg's "connection is closed" as its cause.
_CONNECTION_LOST = (
    OperationalError,
    InterfaceError,
    AsyncAdapt_asyncpg_dbapi.InterfaceError,
    AsyncAdapt_asyncpg_dbapi.OperationalError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,
    # "cannot switch to state …": the server's goodbye (FATAL 57P01) reached an idle
    # connection just before the next statement.
    asyncpg.exceptions.InternalClientError,
    OSError,  # ConnectionResetError, ConnectionRefusedError …
    EOFError,  # asyncio.IncompleteReadError
    TimeoutError,  # a connect, statement (command_timeout) or asyncpg pool acquire timeout
    SATimeoutError,  # no free connection in SQLAlchemy's pool within pool_timeout
)


def is_connection_lost(exc: BaseException) -> bool:
    """``exc`` or an error it was raised from says the connection is gone (the database
    restarted, a network failure, a timeout)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, _CONNECTION_LOST):
            return True
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False


def is_transient(exc: BaseException) -> bool:
    """A failure that says nothing about the work itself: try the same work again later."""
    if is_connection_lost(exc):
        return True
    state = sqlstate_of(exc)
    if state is None:
        return False
    return state in _TRANSIENT_SQLSTATES or state.startswith(_TRANSIENT_CLASSES)


async def retry_conflicts(work: Callable[[], Awaitable[T]], *, what: str) -> T:
    """Run ``work`` (one transaction) again when PostgreSQL aborts it for a deadlock or a
    serialization failure: the other party has finished by then. Any other error, or a
    conflict on the last attempt, is raised.

    Why: use cases lock rows in the order their data gives (a subtask's event locks the
    subtask then its parent; cancelling the parent locks it then its subtasks), so two of
    them can deadlock. PostgreSQL breaks the cycle by aborting one; re-running it is the
    fix, rather than an error for the client or a dead-lettered event."""
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            return await work()
        except Exception as exc:
            if attempt == CONFLICT_ATTEMPTS or not is_conflict(exc):
                raise
            log.info("%s: %s (SQLSTATE %s); running it again", what, type(exc).__name__, sqlstate_of(exc))
            # A short random pause, so that two aborted parties do not collide again.
            await asyncio.sleep(random.uniform(0, 0.01 * attempt))
    raise AssertionError("unreachable")


# Every class ``db.errors.is_transient`` may judge (the drivers', SQLAlchemy's, the network's).
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    SQLAlchemyError,
    AsyncAdapt_asyncpg_dbapi.Error,
    asyncpg.exceptions.PostgresError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    EOFError,
    TimeoutError,
)
