"""Settings: defaults that run with nothing configured, file < environment < overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from tidings.errors import ConfigError
from tidings.settings import load_settings


def test_defaults_need_nothing_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.database_url == "sqlite:///tidings.db"
    assert settings.outbox_dir == Path("outbox")
    assert settings.smtp_url is None and settings.api_keys == []


def test_the_environment_beats_the_file_and_overrides_beat_both(tmp_path: Path) -> None:
    config = tmp_path / "tidings.toml"
    config.write_text('port = 9000\nhost = "0.0.0.0"\nworkflows_dir = "flows"\n')
    settings = load_settings(config, environ={"TIDINGS_PORT": "9100"}, host="127.0.0.2")
    assert (settings.port, settings.host, settings.workflows_dir) == (
        9100,
        "127.0.0.2",
        Path("flows"),
    )


def test_comma_separated_keys_from_the_environment_stay_secret() -> None:
    settings = load_settings(environ={"TIDINGS_API_KEYS": "k1, k2,,"})
    assert [key.get_secret_value() for key in settings.api_keys] == ["k1", "k2"]
    assert "k1" not in repr(settings) and "k1" not in str(settings.api_keys)


def test_other_tidings_variables_in_the_environment_are_not_settings_and_are_ignored() -> None:
    settings = load_settings(
        environ={"TIDINGS_TEST_POSTGRES_URL": "postgresql://x", "TIDINGS_PORT": "1"}
    )
    assert settings.port == 1


def test_an_unknown_key_in_the_file_is_an_error_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "tidings.toml"
    config.write_text("prot = 9000\n")
    with pytest.raises(ConfigError, match="prot: Extra inputs are not permitted"):
        load_settings(config, environ={})


def test_a_bad_value_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="port: Input should be a valid integer"):
        load_settings(environ={"TIDINGS_PORT": "eighty"})


def test_a_named_config_file_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_settings(tmp_path / "missing.toml", environ={})


@pytest.mark.parametrize(
    ("environ", "overrides", "base"),
    [
        ({}, {}, "http://127.0.0.1:8025"),
        ({"TIDINGS_PORT": "9100"}, {}, "http://127.0.0.1:9100"),
        ({}, {"host": "10.0.0.5", "port": 8080}, "http://10.0.0.5:8080"),
        ({}, {"host": "0.0.0.0", "port": 8080}, "http://127.0.0.1:8080"),
        ({}, {"host": "::1"}, "http://[::1]:8025"),
        (
            {"TIDINGS_PUBLIC_URL": "https://t.example", "TIDINGS_PORT": "9100"},
            {},
            "https://t.example",
        ),
    ],
)
def test_links_point_at_the_address_served_unless_public_url_is_set(
    environ: dict[str, str], overrides: dict[str, object], base: str
) -> None:
    assert load_settings(environ=environ, **overrides).link_base() == base


def test_links_follow_the_port_bound_when_asked_for_any() -> None:
    assert load_settings(environ={"TIDINGS_PORT": "0"}).link_base(41234) == "http://127.0.0.1:41234"
