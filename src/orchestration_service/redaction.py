"""Secrets stay out of messages: URL credentials, secret query parameters, raw error texts.

- :func:`redact` masks the password of every URL in a text (``user:pass@`` becomes
  ``user:***@``) and the value of secret-looking parameters (``password=…``, ``token=…``).
  Start-up errors, configuration errors and connection-failure logs pass through it, and
  :class:`RedactingFilter` applies it to every log line as the last line of defence.
- :func:`reason` turns an exception into a short classified reason ("connection refused",
  "timeout", "authentication failed" …) for answers such as ``/health/detailed``, which
  must never carry raw exception texts or upstream bodies.

This module imports nothing of the service, so configuration and logging can use it.
"""

from __future__ import annotations

import errno
import logging
import re
import socket

MASK = "***"

# scheme://user:password@ — the password runs to the last "@" before a blank or a quote,
# so an unencoded "@" or "/" in it is masked too.
_URL_CREDENTIALS = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@'\"]*):[^\s'\"]*@")
_SECRET_PARAMS = re.compile(
    r"(?i)(?P<head>\b(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?token)=)[^&\s'\";,]+"
)


def redact(text: str) -> str:
    """``text`` with URL passwords and secret parameter values masked."""
    if "://" not in text and "=" not in text:
        return text
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['head']}:{MASK}@", text)
    return _SECRET_PARAMS.sub(lambda m: f"{m['head']}{MASK}", text)


def redact_url(url: str) -> str:
    return redact(url)


def error_text(exc: BaseException) -> str:
    """``Type: message`` of an exception, redacted: for logs (operators), not for answers."""
    return redact(f"{type(exc).__name__}: {exc}".rstrip(": "))


# Exception class names (matched by name: the drivers are optional imports here).
_AUTH_TYPES = {
    "InvalidPasswordError",
    "InvalidAuthorizationSpecificationError",
    "ProbableAuthenticationError",
    "AuthenticationError",
}
_TEXT_REASONS = (
    ("password authentication failed", "authentication failed"),
    ("access_refused", "authentication failed"),
    ("authentication", "authentication failed"),
    ("does not exist", "not found"),
    ("refused", "connection refused"),
    ("timed out", "timeout"),
    ("timeout", "timeout"),
    ("name or service not known", "name resolution failed"),
    ("temporary failure in name resolution", "name resolution failed"),
    ("nodename nor servname", "name resolution failed"),
    ("connection reset", "connection lost"),
    ("connection lost", "connection lost"),
    ("closed", "connection closed"),
)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 10:
        e = todo.pop(0)
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        orig = getattr(e, "orig", None)  # SQLAlchemy's DBAPIError wraps the driver's error
        todo.extend([orig if isinstance(orig, BaseException) else None, e.__cause__, e.__context__])
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)
    return seen


def _by_type(e: BaseException) -> str | None:
    name = type(e).__name__
    if name in _AUTH_TYPES:
        return "authentication failed"
    # By name too: httpx's timeouts and SQLAlchemy's pool TimeoutError are not the builtin.
    if isinstance(e, TimeoutError) or name.endswith(("Timeout", "TimeoutError", "TimeoutException")):
        return "timeout"
    if isinstance(e, ConnectionRefusedError) or getattr(e, "errno", None) == errno.ECONNREFUSED:
        return "connection refused"
    if isinstance(e, socket.gaierror):
        return "name resolution failed"
    if isinstance(e, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return "connection lost"
    response = getattr(e, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        return f"http {status}"
    return None


def reason(exc: BaseException) -> str:
    """A short classified reason for ``exc``; never its text (which may quote a URL, a
    password, or an upstream body)."""
    chain = _chain(exc)
    for e in chain:
        found = _by_type(e)
        if found:
            return found
    texts = " ".join(str(e).lower() for e in chain)
    for needle, found in _TEXT_REASONS:
        if needle in texts:
            return found
    if any(isinstance(e, OSError) for e in chain) or "connect" in texts:
        return "connection failed"
    return f"unexpected error ({type(exc).__name__})"


class RedactingFilter(logging.Filter):
    """Masks URL credentials in a record's message, extras and traceback (installed on the
    service's log handler)."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging reports it itself
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        for key, value in list(record.__dict__.items()):
            if isinstance(value, str) and key not in ("msg", "exc_text") and ("://" in value or "=" in value):
                setattr(record, key, redact(value))
        return True
