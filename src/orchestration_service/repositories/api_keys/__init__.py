"""API keys, stored hashed: the port the use cases see, and one implementation per backend."""

from orchestration_service.repositories.api_keys.port import ApiKeyRecord, ApiKeyRepository

__all__ = ["ApiKeyRecord", "ApiKeyRepository"]
