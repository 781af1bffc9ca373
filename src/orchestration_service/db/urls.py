"""Database URLs: the forms accepted in settings, turned into the async drivers' URLs."""

from __future__ import annotations

ASYNC_SCHEMES = ("postgresql+asyncpg://", "sqlite+aiosqlite://")


def normalize_database_url(value: str) -> str:
    """The async driver's URL for ``value``; ValueError for a database the service cannot use."""
    # Accept the plain driver names people copy from elsewhere; the service is async only.
    if value.startswith(("postgresql://", "postgres://")):
        value = "postgresql+asyncpg://" + value.split("://", 1)[1]
    elif value.startswith("sqlite:///"):
        value = "sqlite+aiosqlite:///" + value.split(":///", 1)[1]
    if not value.startswith(ASYNC_SCHEMES):
        raise ValueError("must start with sqlite+aiosqlite:/// or postgresql+asyncpg://")
    return value
