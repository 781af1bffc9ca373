"""Reviews on PostgreSQL: the shared SQLAlchemy Core statements."""

from __future__ import annotations

from orchestration_service.repositories.reviews.sql import SqlReviews


class PostgresReviews(SqlReviews):
    pass
