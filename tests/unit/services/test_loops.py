"""Background loops stop with their app, even when a cancellation is lost on the way."""

from __future__ import annotations

import asyncio

from orchestration_service.services.dispatcher import _Loop


class Stubborn(_Loop):
    """A tick whose cancellation comes out as a TimeoutError, as Python 3.11's
    ``asyncio.wait_for`` can turn it when it meets a timeout (asyncpg's command timeout)."""

    name = "stubborn"

    def __init__(self) -> None:
        super().__init__(interval=0.01)
        self.ticking = asyncio.Event()

    async def tick(self) -> bool:
        self.ticking.set()
        try:
            await asyncio.Event().wait()  # until cancelled
        except asyncio.CancelledError:
            raise TimeoutError("the cancellation was lost") from None
        return False


async def test_a_loop_whose_cancellation_is_lost_still_stops() -> None:
    loop = Stubborn()
    loop.start()
    task = loop._task
    assert task is not None
    await asyncio.wait_for(loop.ticking.wait(), 5)
    await loop.stop()
    # Without the stop flag the loop retried the "timeout" and outlived its app.
    assert task.done()
