"""How a project change reaches the other processes' caches.

PostgreSQL: ``NOTIFY`` on ``PROJECTS_CHANNEL`` with the project's id, heard on a connection of
the process's own (outside the pools, like the event-log feed's). Sent after the change has
committed, so a process that hears it reads the new row. A lost notification (a listener
reconnecting) costs at most ``projects.cache_seconds``: the caches' own check still runs.

SQLite: one process serves the database, and the process that changes a project forgets it
itself, so there is nobody to tell.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import asyncpg

from orchestration_service.db.engine import PROJECTS_CHANNEL, Database, close_own

log = logging.getLogger(__name__)

CLOSE_SECONDS = 1.0
ANNOUNCE = "SELECT pg_notify($1, $2)"


class PostgresProjectChanges:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._listener: asyncpg.Connection | None = None
        self._sender: asyncpg.Connection | None = None

    async def listen(self, on_change: Callable[[str], None]) -> None:
        if self._listener is not None and not self._listener.is_closed():
            return
        conn = await self.db.connect_own("orchestration-projects")
        try:
            await conn.add_listener(PROJECTS_CHANNEL, lambda _c, _pid, _ch, project_id: on_change(project_id))
        except BaseException:
            conn.terminate()
            raise
        self._listener = conn

    async def announce(self, project_id: str) -> None:
        # Its own connection, outside the change's transaction: a NOTIFY inside a writing
        # transaction serialises its commit behind every other notifying commit.
        if self._sender is None or self._sender.is_closed():
            self._sender = await self.db.connect_own("orchestration-projects-announce", durable_commits=False)
        await self._sender.execute(ANNOUNCE, PROJECTS_CHANNEL, project_id)

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        sender, self._sender = self._sender, None
        await close_own(listener, CLOSE_SECONDS)
        await close_own(sender, CLOSE_SECONDS)


class LocalProjectChanges:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def listen(self, on_change: Callable[[str], None]) -> None:
        return None

    async def announce(self, project_id: str) -> None:
        return None

    async def close(self) -> None:
        return None
