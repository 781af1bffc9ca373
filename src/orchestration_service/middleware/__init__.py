"""ASGI middleware of the HTTP edge that is specific to this service (the hot-path fast lane)."""
