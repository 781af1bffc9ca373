"""The progress board: one read per interval for every followed task of the process, only
while somebody follows one, and each stream sees its task's latest report."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, cast

from orchestration_service.repositories.ports import Storage
from orchestration_service.services.progress_board import READ_CHUNK, ProgressBoard
from tests.waiting import eventually


class _Tasks:
    def __init__(self, progress: dict[uuid.UUID, dict[str, Any] | None]) -> None:
        self.progress = progress
        self.asked: list[int] = []

    async def progress_of(self, task_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any] | None]:
        self.asked.append(len(task_ids))
        return {t: self.progress[t] for t in task_ids if t in self.progress}


class _Storage:
    def __init__(self, tasks: _Tasks) -> None:
        self.tasks = tasks

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[_Storage]:
        yield self


def board_over(progress: dict[uuid.UUID, dict[str, Any] | None]) -> tuple[ProgressBoard, _Tasks]:
    tasks = _Tasks(progress)
    return ProgressBoard(cast(Storage, _Storage(tasks)), interval=0.01), tasks


async def test_many_streams_share_one_read_per_interval() -> None:
    ids = [uuid.uuid4() for _ in range(50)]
    board, tasks = board_over(dict.fromkeys(ids))
    with contextlib.ExitStack() as streams:
        for tid in ids:
            streams.enter_context(board.watch(tid, None))
            streams.enter_context(board.watch(tid, None))  # two streams of one task
        tasks.progress[ids[7]] = {"value": 0.5}
        await eventually(lambda: board.latest(ids[7]) == {"value": 0.5}, what="the report on the board")
        assert set(tasks.asked) == {50}, "each read covers every followed task once"
    await board.close()


async def test_reads_stop_when_nobody_follows_and_start_again() -> None:
    tid = uuid.uuid4()
    board, tasks = board_over({tid: {"value": 0.1}})
    with board.watch(tid, None):
        await eventually(lambda: board.latest(tid) == {"value": 0.1}, what="the first read")
    assert board.latest(tid) is None  # forgotten with its last stream
    loop = board._loop
    assert loop is not None
    await asyncio.wait_for(loop, 5)  # the loop ends on its own
    asked = len(tasks.asked)
    tasks.progress[tid] = {"value": 0.9}
    with board.watch(tid, {"value": 0.1}):
        assert board.latest(tid) == {"value": 0.1}  # what the stream had read itself
        await eventually(lambda: board.latest(tid) == {"value": 0.9}, what="reads again")
    assert len(tasks.asked) > asked
    await board.close()


async def test_a_large_board_reads_in_chunks_and_a_failed_read_keeps_the_last_values() -> None:
    ids = [uuid.uuid4() for _ in range(READ_CHUNK + 3)]
    board, tasks = board_over({t: {"value": 0.2} for t in ids})
    with contextlib.ExitStack() as streams:
        for tid in ids:
            streams.enter_context(board.watch(tid, None))
        await board.refresh()
        assert tasks.asked[-2:] == [READ_CHUNK, 3]
        assert all(board.latest(t) == {"value": 0.2} for t in ids)

        failures: list[int] = []

        async def failing(task_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any] | None]:
            failures.append(len(task_ids))
            raise ConnectionError("database gone")

        tasks.progress_of = failing  # type: ignore[method-assign]
        before = board.reads
        # Failed twice: the loop survived the first failure and read again.
        await eventually(lambda: len(failures) >= 2, what="reads failing, and the loop going on")
        assert board.latest(ids[0]) == {"value": 0.2} and board.reads == before
    await board.close()
