"""Stopping background tasks (``background.cancel_and_wait``): bounded, and telling where a
task that ignores its cancellation is stuck."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from orchestration_service import background
from orchestration_service.background import cancel_and_wait


async def test_a_cancelled_task_is_waited_for() -> None:
    finished = []
    started = asyncio.Event()

    async def loop() -> None:
        try:
            started.set()
            await asyncio.sleep(60)  # a loop's long wait, which the cancellation interrupts
        finally:
            finished.append("cleaned up")

    task = asyncio.create_task(loop())
    await started.wait()
    await cancel_and_wait(task, "loop")
    assert task.cancelled() and finished == ["cleaned up"]


async def test_a_task_that_ignores_cancellation_is_left_behind_with_its_stack(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(background, "STOP_WAIT_SECONDS", 0.2)
    release = asyncio.Event()
    running = asyncio.Event()

    async def stubborn_driver_call() -> None:
        running.set()
        while not release.is_set():
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                continue  # as a driver call that runs out its own timeout

    task = asyncio.create_task(stubborn_driver_call())
    await running.wait()
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="orchestration_service.background"):
        await cancel_and_wait(task, "stubborn loop")
    assert time.monotonic() - started < 2
    assert not task.done()
    (record,) = [r for r in caplog.records if "stubborn loop did not stop" in r.getMessage()]
    assert "stubborn_driver_call" in record.getMessage()  # where it is stuck
    release.set()
    await task
