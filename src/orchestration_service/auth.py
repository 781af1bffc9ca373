"""The API-key check at the HTTP edge (on when ``auth.enabled``).

Every ``/api/v1`` route except health and the OpenAPI document needs a key, sent as
``Authorization: Bearer KEY`` or ``X-API-Key: KEY``. The key's projects become the request's
project scope, which every query honours: another project's task, record or event answers
exactly as if it did not exist.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from orchestration_service.domain.access import is_public, required_scope
from orchestration_service.http import problem
from orchestration_service.services.auth import ApiKeyService


def _key_from(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == b"x-api-key" and value.strip():
            return value.decode("latin-1").strip()
    return None


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        key = _key_from(scope["headers"])
        keys: ApiKeyService = scope["app"].state.container.keys
        principal = await keys.authenticate(key) if key else None
        if principal is None:
            detail = "send an API key as 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
            if key:
                detail = "the API key is unknown or revoked"
            response = problem(
                401, detail=detail, instance=scope["path"], headers={"WWW-Authenticate": "Bearer"}
            )
            await response(scope, receive, send)
            return
        needed = required_scope(scope["method"], scope["path"])
        if not principal.allows(needed):
            response = problem(
                403,
                detail=f"this key has scope {principal.scope.value}; this request needs {needed.value}",
                instance=scope["path"],
            )
            await response(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["project_scope"] = list(principal.projects) if principal.projects is not None else None
        state["principal"] = principal
        await self.app(scope, receive, send)
