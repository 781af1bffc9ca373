"""Human reviews: the port the use cases see, and one implementation per backend."""

from orchestration_service.repositories.reviews.port import ReviewFilter, ReviewRecord, ReviewRepository

__all__ = ["ReviewFilter", "ReviewRecord", "ReviewRepository"]
