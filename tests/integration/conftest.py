"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel

from tests.conftest import AMQP_URL, missing_service


@pytest.fixture
async def admin() -> AsyncIterator[AbstractChannel]:
    """A plain connection of the test's own, for inspecting the broker."""
    try:
        conn = await aio_pika.connect(AMQP_URL, timeout=5)
    except Exception as exc:
        missing_service("RabbitMQ", exc)
        raise
    try:
        yield await conn.channel()
    finally:
        await conn.close()
