"""Secret settings read from files, so passwords need not sit in environment listings.

Each secret setting has a variable (``ORCH_DATABASE_URL``) and may instead be given as a file:

* ``<VARIABLE>_FILE``: the path of a file holding the value (``ORCH_DATABASE_URL_FILE=
  /run/secrets/database-url``), as the official database images do. Setting both the variable
  and its ``_FILE`` is a start-up error: which one wins would be a guess.
* ``ORCH_SECRETS_DIR``: a directory of files named like the variables
  (``$ORCH_SECRETS_DIR/ORCH_DATABASE_URL``), e.g. a Kubernetes Secret mounted as a volume.
  Variables (either form) win over the directory; the directory wins over the YAML file.

A value is the file's text with surrounding whitespace removed (``echo`` and editors add a
newline). A missing, unreadable or empty file, or a file in the directory that names no secret
setting (a typo would otherwise go unnoticed), stops the start with a message naming the path,
never the contents.

This module imports nothing of the service, so configuration can use it. Its errors
(``SecretFileError``) reach ``config.load_settings``, which reports them as ``SettingsError``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

SECRETS_DIR_ENV = "ORCH_SECRETS_DIR"
FILE_SUFFIX = "_FILE"

# Variable -> (section, field): every setting whose value is a secret or carries one.
SECRET_SETTINGS: dict[str, tuple[str, str]] = {
    "ORCH_DATABASE_URL": ("storage", "database_url"),
    "ORCH_BROKER_URL": ("events", "broker_url"),
    "ORCH_AUTH__BOOTSTRAP_ADMIN_KEY": ("auth", "bootstrap_admin_key"),
}


class SecretFileError(Exception):
    """A secret file named by the configuration cannot be used; the message names it."""


def _read(path: Path, origin: str) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SecretFileError(f"{origin}: file not found: {path}") from None
    except IsADirectoryError:
        raise SecretFileError(f"{origin}: {path} is a directory, not a file") from None
    except PermissionError:
        raise SecretFileError(f"{origin}: permission denied reading {path}") from None
    except UnicodeDecodeError:
        raise SecretFileError(f"{origin}: {path} is not UTF-8 text") from None
    except OSError as exc:
        raise SecretFileError(f"{origin}: cannot read {path}: {exc.strerror}") from None
    value = text.strip()
    if not value:
        raise SecretFileError(f"{origin}: {path} is empty")
    return value


def from_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """Values of the ``<VARIABLE>_FILE`` variables, by variable name."""
    out: dict[str, str] = {}
    for var in SECRET_SETTINGS:
        file_var = var + FILE_SUFFIX
        path = environ.get(file_var)
        if path is None:
            continue
        if var in environ:
            raise SecretFileError(f"{var} and {file_var} are both set: set one of them")
        if not path:
            raise SecretFileError(f"{file_var} is set but empty: give the path of a file")
        out[var] = _read(Path(path), file_var)
    return out


def from_directory(environ: Mapping[str, str]) -> dict[str, str]:
    """Values of the files in ``ORCH_SECRETS_DIR``, by variable name."""
    where = environ.get(SECRETS_DIR_ENV)
    if not where:
        return {}
    directory = Path(where)
    if not directory.is_dir():
        raise SecretFileError(f"{SECRETS_DIR_ENV}: not a directory: {directory}")
    out: dict[str, str] = {}
    try:
        entries = sorted(directory.iterdir())
    except OSError as exc:
        raise SecretFileError(f"{SECRETS_DIR_ENV}: cannot list {directory}: {exc.strerror}") from None
    for entry in entries:
        # Kubernetes keeps its own bookkeeping in dot-names (..data, ..2026_…) beside the keys.
        if entry.name.startswith("."):
            continue
        if entry.name not in SECRET_SETTINGS:
            raise SecretFileError(
                f"{SECRETS_DIR_ENV}: {entry} names no secret setting "
                f"(expected file names: {', '.join(SECRET_SETTINGS)})"
            )
        out[entry.name] = _read(entry, SECRETS_DIR_ENV)
    return out


def nested(values: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """``{section: {field: value}}`` for the settings sources."""
    out: dict[str, dict[str, str]] = {}
    for var, value in values.items():
        section, field = SECRET_SETTINGS[var]
        out.setdefault(section, {})[field] = value
    return out


def file_variables(environ: Mapping[str, str] | None = None) -> set[str]:
    """The ``_FILE`` variables that are set (the nested-variable source must skip them)."""
    env = os.environ if environ is None else environ
    return {var + FILE_SUFFIX for var in SECRET_SETTINGS if var + FILE_SUFFIX in env}


def secret_variable_values() -> dict[str, dict[str, str]]:
    """The ``_FILE`` variables' values, nested (beside the flat variables, same strength)."""
    return nested(from_variables(os.environ))


class WithoutFileVariables(PydanticBaseSettingsSource):
    """The nested-variables source, less the secret settings' ``ORCH_SECTION__FIELD_FILE``
    variables, which name files (read with the flat variables), not fields."""

    def __init__(self, settings_cls: type[BaseSettings], inner: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self.inner = inner

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        data: dict[str, Any] = self.inner()
        for var in file_variables():
            section, sep, field = var.removeprefix("ORCH_").lower().partition("__")
            values = data.get(section)
            if sep and isinstance(values, dict):
                values.pop(field, None)
        return data


class SecretsDirSource(PydanticBaseSettingsSource):
    """The files of ``ORCH_SECRETS_DIR``: weaker than every variable, stronger than the YAML."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return nested(from_directory(os.environ))
