"""What the CLI's command modules share. Kept apart from the package ``__init__`` (which
imports every command module to register it) so no command module imports its package back."""

from __future__ import annotations

import typer

from orchestration_service.config import Settings, SettingsError, load_settings
from orchestration_service.redaction import redact


def settings_or_exit(**overrides: object) -> Settings:
    """The settings, or a one-line error and exit status 2 when they do not load."""
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        typer.echo(f"orchestration-service: {redact(str(exc))}", err=True)
        raise typer.Exit(2) from None
