"""A Python client and worker library for the orchestration service's HTTP API and events.

    from orchestration_service.client import Client
    with Client("http://127.0.0.1:8000", api_key=...) as api:
        accepted = api.submit("Write a fibonacci function", "demo")
        task = api.wait(accepted.task_id, timeout=600)

``Client`` (blocking) and ``AsyncClient`` (asyncio) have one method per route, retries that
reuse a submission's idempotency key, timeouts, and problem+json answers raised as
``errors.ApiError`` subclasses. ``worker.Worker`` runs a function for each ``task.ready``
announcement (docs/integrating/client.md).

Why a subpackage of the service's distribution rather than a distribution of its own: one
version number for the API and the client that speaks it, and the client's tests run against
the server of the same commit, with models checked against the same ``contracts/openapi.yaml``
(tests/unit/test_client_models.py). The cost, installing the server's dependencies with
the client, is accepted for now. This package imports nothing of the server (no config,
database, repositories, services, not even the domain): tests/unit/test_architecture.py
enforces it, so splitting it out later is a move, not a rewrite.
"""

from orchestration_service.client.aio import AsyncClient
from orchestration_service.client.calls import NO_RETRY, Call, RetryPolicy
from orchestration_service.client.errors import (
    ApiError,
    ClientError,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    TransportFailed,
    Unauthorized,
    Unavailable,
)
from orchestration_service.client.sync import Client

__all__ = [
    "NO_RETRY",
    "ApiError",
    "AsyncClient",
    "Call",
    "Client",
    "ClientError",
    "Conflict",
    "Forbidden",
    "Invalid",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "TransportFailed",
    "Unauthorized",
    "Unavailable",
]
