"""The database gauges of /metrics: the port, and one implementation per backend."""

from orchestration_service.repositories.gauges.port import GaugeReading, GaugeRepository

__all__ = ["GaugeReading", "GaugeRepository"]
