"""Where a client command's connection comes from: the command line, the environment, a named
profile of the user's configuration file, the defaults (in that order, the first set wins).

The file, ``$XDG_CONFIG_HOME/orchestration-service/config.toml`` (``~/.config/…`` without
XDG_CONFIG_HOME)::

    default_profile = "staging"        # optional; else a profile named "default", else none

    [profiles.staging]
    url = "https://orch.staging.example"
    api_key_file = "~/.config/orchestration-service/staging.key"
    project = "demo"                   # task submit's project when --project is not given
    output = "table"                   # table, json, jsonl or yaml

A profile names a file holding the key, never the key itself: the configuration file gets
copied, shown and committed; a key file is easier to keep private. Nothing here reads the
server's configuration (``ORCH_CONFIG``) or its database: a client runs anywhere.
"""

from __future__ import annotations

import stat
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from orchestration_service.cli.client import DEFAULT_URL, EXIT_USAGE, CliError
from orchestration_service.cli.output import Format

PROFILE_KEYS = frozenset({"url", "api_key_file", "project", "output"})


@dataclass(frozen=True, slots=True)
class Flags:
    """What the command line gave (None: not given). The root command's flags, overridden by
    the same flags given after the subcommand (``task ls --url …``)."""

    url: str | None = None
    api_key: str | None = None
    api_key_file: str | None = None
    output: str | None = None
    profile: str | None = None

    def over(self, outer: Flags) -> Flags:
        """These flags, falling back to ``outer``'s where not given."""
        mine = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(outer, **{k: v for k, v in mine.items() if v is not None})


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    url: str | None = None
    api_key_file: str | None = None
    project: str | None = None
    output: str | None = None


@dataclass(frozen=True, slots=True)
class Connection:
    """The resolved settings of a client command."""

    url: str
    api_key: str | None
    output: Format
    project: str | None
    profile: str | None


def config_path(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "orchestration-service" / "config.toml"


def usage(message: str) -> CliError:
    return CliError(message, EXIT_USAGE)


def load_profiles(path: Path) -> tuple[dict[str, Profile], str | None]:
    """The file's profiles and its ``default_profile`` (none of either if it does not exist)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, None
    except (OSError, UnicodeDecodeError) as exc:
        raise usage(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise usage(f"{path} is not valid TOML: {exc}") from None
    unknown = set(data) - {"default_profile", "profiles"}
    if unknown:
        raise usage(f"{path}: unknown key(s) {', '.join(sorted(unknown))} (default_profile, [profiles.NAME])")
    default = data.get("default_profile")
    if default is not None and not isinstance(default, str):
        raise usage(f"{path}: default_profile must be a profile name")
    tables = data.get("profiles", {})
    if not isinstance(tables, dict):
        raise usage(f"{path}: profiles must be tables, [profiles.NAME]")
    return {name: _profile(path, name, table) for name, table in tables.items()}, default


def _profile(path: Path, name: str, table: Any) -> Profile:
    where = f"{path}: [profiles.{name}]"
    if not isinstance(table, dict):
        raise usage(f"{where} must be a table")
    if "api_key" in table:
        raise usage(f"{where}: put the key in a file and name it with api_key_file, not api_key")
    unknown = set(table) - PROFILE_KEYS
    if unknown:
        raise usage(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))} ({', '.join(sorted(PROFILE_KEYS))})"
        )
    for key, value in table.items():
        if not isinstance(value, str):
            raise usage(f"{where}: {key} must be a string")
    key_file = table.get("api_key_file")
    if key_file is not None:
        # A relative key file is beside the configuration file, not wherever the command runs.
        key_file = str(path.parent / Path(key_file).expanduser())
    return Profile(name, table.get("url"), key_file, table.get("project"), table.get("output"))


def select_profile(flags: Flags, env: Mapping[str, str], path: Path) -> Profile | None:
    """``--profile`` > ``ORCH_PROFILE`` > ``default_profile`` > a profile named ``default``."""
    profiles, default = load_profiles(path)
    name = flags.profile or env.get("ORCH_PROFILE") or default
    if not name:
        return profiles.get("default")
    if name not in profiles:
        if not path.exists():
            where = f"{path} does not exist"
        else:
            where = f"known: {', '.join(sorted(profiles))}" if profiles else f"{path} has no profiles"
        raise usage(f"unknown profile {name!r} ({where})")
    return profiles[name]


def resolve(flags: Flags, env: Mapping[str, str], path: Path | None = None) -> Connection:
    """Each setting from the first of: the command line, the environment (ORCH_URL,
    ORCH_API_KEY / ORCH_API_KEY_FILE, ORCH_OUTPUT, ORCH_PROJECT), the profile, the default."""
    path = path or config_path(env)
    profile = select_profile(flags, env, path) or Profile("")
    url = flags.url or env.get("ORCH_URL") or profile.url or DEFAULT_URL
    if not url.startswith(("http://", "https://")):
        raise usage(f"the service URL must start with http:// or https:// (got {url!r})")
    if flags.api_key or flags.api_key_file:
        api_key = flags.api_key or read_key_file(flags.api_key_file or "", "--api-key-file")
    elif env.get("ORCH_API_KEY") or env.get("ORCH_API_KEY_FILE"):
        api_key = env.get("ORCH_API_KEY") or read_key_file(env["ORCH_API_KEY_FILE"], "ORCH_API_KEY_FILE")
    elif profile.api_key_file:
        api_key = read_key_file(profile.api_key_file, f"profile {profile.name}: api_key_file")
    else:
        api_key = None
    output = flags.output or env.get("ORCH_OUTPUT") or profile.output or Format.table
    try:
        fmt = Format(output)
    except ValueError:
        raise usage(f"unknown output {output!r} (table, json, jsonl or yaml)") from None
    project = env.get("ORCH_PROJECT") or profile.project
    return Connection(url, api_key, fmt, project, profile.name or None)


def read_key_file(name: str, what: str) -> str:
    """The key in a file (surrounding whitespace dropped). A file others may read is used, with
    a warning on stderr: refusing would break containers whose secrets are mounted 0644."""
    path = Path(name).expanduser()
    try:
        key = path.read_text(encoding="utf-8").strip()
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise usage(f"{what}: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not key:
        raise usage(f"{what}: {path} is empty")
    if mode & stat.S_IROTH:
        print(
            f"orchestration-service: warning: {path} (the API key) is readable by everyone; chmod 600 {path}",
            file=sys.stderr,
        )
    return key
