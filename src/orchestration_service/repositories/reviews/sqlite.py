"""Reviews on SQLite: the shared SQLAlchemy Core statements."""

from __future__ import annotations

from orchestration_service.repositories.reviews.sql import SqlReviews


class SqliteReviews(SqlReviews):
    pass
