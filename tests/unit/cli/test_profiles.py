"""Where a client command's settings come from: flag > environment > profile > default."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestration_service.cli.client import DEFAULT_URL, EXIT_USAGE, CliError
from orchestration_service.cli.output import Format
from orchestration_service.cli.profiles import Flags, config_path, resolve

CONFIG = """
default_profile = "staging"

[profiles.staging]
url = "http://staging.example:8000"
api_key_file = "staging.key"
project = "demo"
output = "yaml"

[profiles.local]
url = "http://127.0.0.1:9000"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "orchestration-service" / "config.toml"
    path.parent.mkdir()
    path.write_text(CONFIG)
    key = path.parent / "staging.key"
    key.write_text("profile-key\n")
    key.chmod(0o600)
    return path


def usage_error(flags: Flags, env: dict[str, str], path: Path) -> str:
    with pytest.raises(CliError) as caught:
        resolve(flags, env, path)
    assert caught.value.code == EXIT_USAGE
    return caught.value.message


def test_defaults_without_a_file(tmp_path: Path) -> None:
    conn = resolve(Flags(), {}, tmp_path / "none.toml")
    assert (conn.url, conn.api_key, conn.output, conn.project, conn.profile) == (
        DEFAULT_URL,
        None,
        Format.table,
        None,
        None,
    )


def test_the_default_profile_fills_what_nothing_else_gives(config: Path) -> None:
    conn = resolve(Flags(), {}, config)
    assert conn.profile == "staging"
    assert conn.url == "http://staging.example:8000"
    assert conn.api_key == "profile-key"  # the file beside the configuration, stripped
    assert conn.output is Format.yaml and conn.project == "demo"


def test_the_environment_beats_the_profile_and_flags_beat_the_environment(config: Path) -> None:
    env = {"ORCH_URL": "http://env:1", "ORCH_API_KEY": "env-key", "ORCH_OUTPUT": "jsonl", "ORCH_PROJECT": "p"}
    conn = resolve(Flags(), env, config)
    assert (conn.url, conn.api_key, conn.output, conn.project) == (
        "http://env:1",
        "env-key",
        Format.jsonl,
        "p",
    )
    conn = resolve(Flags(url="http://flag:2", api_key="flag-key", output="json"), env, config)
    assert (conn.url, conn.api_key, conn.output) == ("http://flag:2", "flag-key", Format.json)


def test_a_key_file_flag_beats_the_key_in_the_environment(config: Path) -> None:
    key = config.parent / "flag.key"
    key.write_text("file-key")
    key.chmod(0o600)
    conn = resolve(Flags(api_key_file=str(key)), {"ORCH_API_KEY": "env-key"}, config)
    assert conn.api_key == "file-key"
    conn = resolve(Flags(), {"ORCH_API_KEY_FILE": str(key)}, config)
    assert conn.api_key == "file-key"


def test_profile_selection_flag_then_environment_then_default(config: Path) -> None:
    assert resolve(Flags(profile="local"), {"ORCH_PROFILE": "staging"}, config).url == "http://127.0.0.1:9000"
    assert resolve(Flags(), {"ORCH_PROFILE": "local"}, config).url == "http://127.0.0.1:9000"
    local = resolve(Flags(), {"ORCH_PROFILE": "local"}, config)
    assert local.api_key is None and local.output is Format.table  # nothing leaks from staging


def test_a_profile_named_default_is_used_without_default_profile(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[profiles.default]\nurl = "http://d:1"\n[profiles.other]\nurl = "http://o:1"\n')
    assert resolve(Flags(), {}, path).url == "http://d:1"


def test_an_unknown_profile_is_a_usage_error_naming_the_known_ones(config: Path, tmp_path: Path) -> None:
    assert "unknown profile 'prod' (known: local, staging)" in usage_error(Flags(profile="prod"), {}, config)
    missing = usage_error(Flags(), {"ORCH_PROFILE": "prod"}, tmp_path / "none.toml")
    assert "unknown profile 'prod'" in missing and "does not exist" in missing


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[profiles.x\n", "is not valid TOML"),
        ('[profiles.x]\napi_key = "secret"\n', "put the key in a file and name it with api_key_file"),
        ('[profiles.x]\nurll = "http://a"\n', "unknown key(s) urll"),
        ("[profiles.x]\nurl = 3\n", "url must be a string"),
        ('colour = "red"\n', "unknown key(s) colour"),
        ('default_profile = "nope"\n[profiles.x]\nurl = "http://a"\n', "unknown profile 'nope'"),
    ],
)
def test_a_broken_file_is_one_clear_usage_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    assert message in usage_error(Flags(), {}, path)


def test_bad_values_are_usage_errors(config: Path) -> None:
    assert "unknown output 'xml'" in usage_error(Flags(), {"ORCH_OUTPUT": "xml"}, config)
    assert "must start with http://" in usage_error(Flags(url="127.0.0.1:8000"), {}, config)
    assert "cannot read" in usage_error(Flags(api_key_file=str(config.parent / "missing")), {}, config)
    empty = config.parent / "empty.key"
    empty.write_text("  \n")
    assert "is empty" in usage_error(Flags(api_key_file=str(empty)), {}, config)


def test_a_world_readable_key_file_is_used_with_a_warning(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = config.parent / "staging.key"
    key.chmod(0o644)
    assert resolve(Flags(), {}, config).api_key == "profile-key"
    assert "readable by everyone; chmod 600" in capsys.readouterr().err
    key.chmod(0o600)
    resolve(Flags(), {}, config)
    assert capsys.readouterr().err == ""


def test_the_file_honours_xdg_config_home() -> None:
    assert config_path({"XDG_CONFIG_HOME": "/x"}) == Path("/x/orchestration-service/config.toml")
    assert config_path({"HOME": "/home/u"}) == Path("/home/u/.config/orchestration-service/config.toml")


def test_command_flags_override_the_root_flags() -> None:
    root = Flags(url="http://root:1", output="yaml", profile="a")
    merged = Flags(url="http://cmd:2").over(root)
    assert (merged.url, merged.output, merged.profile) == ("http://cmd:2", "yaml", "a")
