"""SQL of the relay leadership: a PostgreSQL session advisory lock, held by one connection.

The lock is the session's: it goes when the session ends. A half-open connection keeps the
session (and the lock) alive on the server until its TCP keepalives give up, so a follower
also ends a leader session that has shown no activity for longer than the leader's own
check allows (the leader runs ``SELECT 1`` on it every few seconds).
"""

from __future__ import annotations

TRY_LOCK = "SELECT pg_try_advisory_lock($1)"

PING = "SELECT 1"

# The lock's holder when its session has been silent (no statement started or ended) for
# longer than $3 seconds. A bigint advisory key shows in pg_locks as classid (high 32 bits),
# objid (low 32 bits) and objsubid 1.
END_SILENT_HOLDER = """
SELECT pg_terminate_backend(a.pid)
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.classid::bigint = ($1::bigint >> 32) AND l.objid::bigint = ($1::bigint & 4294967295)
  AND a.pid <> pg_backend_pid()
  AND a.state_change < now() - make_interval(secs => $2::float8)
"""
