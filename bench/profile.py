"""Optional sampling profile of the server under load (``--profile``), with py-spy.

py-spy is not a dependency of the project: ``.venv/bin/pip install py-spy`` for a one-off.
It records collapsed stacks (``--format raw``: one ``frame;frame;… count`` line per stack)
of each worker process; :func:`summarise` splits the samples between our code and the
frameworks and names the lines of ours that the time goes through.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OURS = "orchestration_service"
# First match wins: the package a frame's file belongs to.
PACKAGES = (
    ("ours", "orchestration_service/"),
    ("fastapi", "fastapi/"),
    ("starlette", "starlette/"),
    ("pydantic", "pydantic"),
    ("sqlalchemy", "sqlalchemy/"),
    ("asyncpg", "asyncpg/"),
    ("uvicorn", "uvicorn/"),
    ("amqp", "aio_pika/"),
    ("amqp", "aiormq/"),
    ("amqp", "pamqp/"),
    ("anyio", "anyio/"),
    ("asyncio", "asyncio/"),
    ("logging", "logging/"),
)
# Frames of a thread that waits (py-spy --native cannot always tell): such samples are skipped.
IDLE_FRAMES = frozenset(
    {
        "Process.always_pong",  # uvicorn's supervisor ping thread (workers > 1)
        "pthread_cond_wait",
        "pthread_cond_timedwait",
        "epoll_wait",
        "epoll_pwait",
        "Condition.wait",
        "Thread._wait_for_tstate_lock",
    }
)
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str | None:
    return shutil.which("py-spy") or (
        str(Path(sys.executable).parent / "py-spy")
        if (Path(sys.executable).parent / "py-spy").exists()
        else None
    )


async def record(
    executable: str, pid: int, seconds: float, out: Path, *, rate: int = 200, native: bool = True
) -> Path:
    """Sample ``pid`` for ``seconds``; returns the collapsed-stack file.

    ``native`` also samples C frames (uvloop, asyncpg's protocol, the interpreter's GC,
    system calls), which pauses the process for each sample: the run is slower."""
    args = [executable, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds)))]
    args += ["--rate", str(rate), "--format", "raw", "--output", str(out)]
    args += ["--native"] if native else ["--nonblocking"]
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        _, err = await proc.communicate()
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0 or not _exists(out):
        raise RuntimeError(f"py-spy failed ({proc.returncode}): {err.decode(errors='replace')[-500:]}")
    return out


def _exists(path: Path) -> bool:
    return path.exists()


def _package(file: str) -> str:
    for name, marker in PACKAGES:
        if marker in file:
            return name
    return "other"


def _native_kind(func: str, file: str) -> str:
    if file.startswith("libc.so") or file.startswith("libpthread"):
        return "native: system calls/libc"
    if func.startswith("gc_") or "gcmodule" in file:
        return "native: garbage collector"
    if file.startswith("libpython") or file.endswith((".h", "ceval.c")):
        return "native: interpreter"
    if file.startswith(("loop.c", "uvloop")):
        return "native: uvloop"
    if file.startswith(("protocol.c", "pgproto", "record/")):
        return "native: asyncpg"
    if file.startswith("_row_cy") or "sqlalchemy" in file:
        return "native: sqlalchemy"
    return "native: other"


@dataclass
class Frame:
    func: str
    file: str
    line: str

    @property
    def is_python(self) -> bool:
        return self.file.endswith(".py")

    @property
    def is_ours(self) -> bool:
        # The CLI frames sit under every request (uvicorn.run): they say nothing.
        return self.is_python and OURS + "/" in self.file and "/cli/" not in self.file

    @property
    def package(self) -> str:
        return _package(self.file) if self.is_python else _native_kind(self.func, self.file)

    def short(self, with_line: bool = True) -> str:
        file = self.file
        if OURS in file:
            file = file[file.index(OURS) :]
        elif "site-packages/" in file:
            file = file.split("site-packages/", 1)[1]
        suffix = f":{self.line}" if with_line and self.line else ""
        return f"{self.func} ({file}{suffix})"


def _parse(frame: str) -> Frame | None:
    m = _FRAME.match(frame.strip())
    if not m:
        return None
    return Frame(m["func"], m["file"], m["line"] or "")


@dataclass
class Summary:
    samples: int = 0
    idle_samples: int = 0
    self_by_kind: Counter[str] = field(default_factory=Counter)
    by_python_package: Counter[str] = field(default_factory=Counter)
    self_by_function: Counter[str] = field(default_factory=Counter)
    native_callers: Counter[str] = field(default_factory=Counter)
    inclusive_ours: Counter[str] = field(default_factory=Counter)
    innermost_ours: Counter[str] = field(default_factory=Counter)

    def as_dict(self, top: int = 25) -> dict[str, Any]:
        def pct(c: Counter[str]) -> list[tuple[str, float]]:
            return (
                [(k, round(100 * v / self.samples, 1)) for k, v in c.most_common(top)] if self.samples else []
            )

        return {
            "samples": self.samples,
            "idle_samples_skipped": self.idle_samples,
            "self_by_kind_pct": pct(self.self_by_kind),
            "by_python_package_pct": pct(self.by_python_package),
            "self_by_function_pct": pct(self.self_by_function),
            "native_leaf_by_python_caller_pct": pct(self.native_callers),
            "inclusive_ours_pct": pct(self.inclusive_ours),
            "innermost_ours_pct": pct(self.innermost_ours),
        }


def summarise(files: list[Path]) -> Summary:
    s = Summary()
    for path in files:
        for raw in path.read_text(errors="replace").splitlines():
            stack, _, count_s = raw.rpartition(" ")
            if not stack or not count_s.isdigit():
                continue
            n = int(count_s)
            frames = [f for f in (_parse(x) for x in stack.split(";")) if f is not None]
            if not frames or any(f.func in IDLE_FRAMES for f in frames):
                s.idle_samples += n
                continue
            s.samples += n
            leaf = frames[-1]
            python = [f for f in frames if f.is_python]
            s.self_by_kind[leaf.package] += n
            s.by_python_package[python[-1].package if python else "(no Python frame)"] += n
            s.self_by_function[leaf.short()] += n
            if not leaf.is_python:
                caller = python[-1].short() if python else "(no Python frame)"
                s.native_callers[f"{leaf.func} <- {caller}"] += n
            ours = [f for f in frames if f.is_ours]
            for name in {f.short(with_line=False) for f in ours}:
                s.inclusive_ours[name] += n
            s.innermost_ours[ours[-1].short() if ours else "(no frame of ours)"] += n
    return s


def format_summary(title: str, s: Summary, top: int = 12) -> str:
    if not s.samples:
        return f"{title}: no samples"
    lines = [f"{title}: {s.samples} samples ({s.idle_samples} of waiting threads left out)"]

    def shares(c: Counter[str]) -> str:
        return ", ".join(f"{k} {100 * v / s.samples:.1f}%" for k, v in c.most_common())

    def block(head: str, c: Counter[str]) -> None:
        if not c:
            return
        lines.append(f"  {head}")
        for k, v in c.most_common(top):
            lines.append(f"    {100 * v / s.samples:5.1f}%  {k}")

    lines.append("  self time by kind: " + shares(s.self_by_kind))
    lines.append(
        "  by innermost Python package (C time charged to its caller): " + shares(s.by_python_package)
    )
    block("hottest leaf functions (self time)", s.self_by_function)
    block("native leaves and the Python line that called them", s.native_callers)
    block("our functions, inclusive", s.inclusive_ours)
    block("innermost line of ours on the stack (work done on our behalf)", s.innermost_ours)
    return "\n".join(lines)
