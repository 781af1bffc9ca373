"""Checks on decoded JSON that the databases impose."""

from __future__ import annotations

from typing import Any

import orjson


def nul_path(value: Any, path: str = "", depth: int = 0, *, index: str = "[{}]") -> str | None:
    """Where a NUL character is, in a key or a string, if anywhere (PostgreSQL text and JSONB
    cannot hold one). ``index`` formats list positions: ``"[{}]"`` or ``".{}"``."""
    if depth == 0 and _surely_without_nul(value):
        return None  # the common case, decided in C (the walk below is the import's hottest step)
    if depth > 64:
        return None
    if isinstance(value, str):
        return path or "$" if "\x00" in value else None
    if isinstance(value, dict):
        for k, v in value.items():
            sub = f"{path}.{k}" if path else str(k)
            if "\x00" in str(k):
                return sub
            found = nul_path(v, sub, depth + 1, index=index)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found = nul_path(v, path + index.format(i), depth + 1, index=index)
            if found is not None:
                return found
    return None


def _surely_without_nul(value: Any) -> bool:
    """JSON text escapes NUL as \\u0000 (in keys and strings alike): absent from the encoding,
    absent from the value. A value orjson cannot encode is left to the walk."""
    try:
        return b"\\u0000" not in orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return False
