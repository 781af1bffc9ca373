"""Who may do what: API key scopes and the requests each scope allows.

`read` may GET; `write` may also submit, cancel and retry tasks and decide reviews; `admin`
may also taint, clear, roll back, create checkpoints and post events. The health probes
(/health, /health/live, /health/ready) and /metrics need no key; /health/detailed needs one
of any scope.
"""

from __future__ import annotations

import re
from enum import StrEnum


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    @property
    def level(self) -> int:
        return {"read": 0, "write": 1, "admin": 2}[self.value]


# The probes only: /health/detailed names dependencies and their errors, so it needs a key.
_PUBLIC = re.compile(r"^/api/v1/(health(/live|/ready)?/?|openapi\.json|docs.*)$")
_WRITE = (
    ("POST", re.compile(r"^/api/v1/tasks/?$")),
    ("POST", re.compile(r"^/api/v1/tasks/[^/]+/cancel/?$")),
    ("POST", re.compile(r"^/api/v1/reviews/[^/]+/(approve|reject|request-changes)/?$")),
    ("POST", re.compile(r"^/api/v1/tasks/[^/]+/retry/?$")),
)


def is_public(path: str) -> bool:
    return not path.startswith("/api/v1/") or bool(_PUBLIC.match(path))


def required_scope(method: str, path: str) -> Scope:
    if method in ("GET", "HEAD", "OPTIONS"):
        return Scope.READ
    if any(method == m and rx.match(path) for m, rx in _WRITE):
        return Scope.WRITE
    return Scope.ADMIN
