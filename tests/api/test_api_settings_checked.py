"""The API's limits are range-checked when the settings are read, a non-JSON list names its own variable, and a
port out of range is one clear line, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from recsys.config import Settings
from recsys.errors import ConfigError


@pytest.mark.parametrize(("var", "value"), [
    ("MAX_BODY_BYTES", "-1"), ("MAX_BODY_BYTES", "0"), ("MAX_IMAGE_PIXELS", "0"), ("MAX_IMAGE_BYTES", "-5"),
    ("RATE_LIMIT_PER_MINUTE", "-5"), ("PORT", "99999"), ("PORT", "-1"), ("RETRY_AFTER_SECONDS", "-1"),
    ("COMPUTE_THREADS", "-2"),
])
def test_out_of_range_api_limits_are_refused(var: str, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from recsys.cli import settings_problem

    monkeypatch.setenv(f"RECSYS_API__{var}", value)
    with pytest.raises(ValidationError) as e:
        Settings()
    assert f"RECSYS_API__{var}" in (settings_problem(e.value) or "")


def test_in_range_limits_are_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    for var, value in (("MAX_BODY_BYTES", "1"), ("RATE_LIMIT_PER_MINUTE", "0"), ("PORT", "0"), ("PORT", "65535")):
        monkeypatch.setenv(f"RECSYS_API__{var}", value)
    api = Settings().api
    assert (api.max_body_bytes, api.rate_limit_per_minute, api.port) == (1, 0, 65535)


@pytest.mark.parametrize(("var", "value"), [("RECSYS_API__CORS_ORIGINS", "https://shop.example"),
                                            ("RECSYS_API__MEDIA_ROOTS", "/data/images")])
def test_a_value_that_is_not_json_names_its_variable(var: str, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as e:
        Settings()
    assert str(e.value).startswith(f"{var} is not JSON") and f'["{value}"]' in str(e.value)
    assert "RECSYS_RANKING__PARAMS" not in str(e.value)


def test_a_mapping_that_is_not_json_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_RANKING__PARAMS", "{bad json")  # was tests/test_config_errors.py's case
    with pytest.raises(ConfigError, match=r"^RECSYS_RANKING__PARAMS is not JSON: write it as a JSON object"):
        Settings()


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_serve_refuses_a_port_out_of_range(port: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from recsys.cli import _register_commands, app

    _register_commands()
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["serve", f"--port={port}"])
    assert result.exit_code == 2 and "Invalid value for '--port'" in result.output, result.output
    assert "Traceback" not in result.output


def test_check_port_says_the_range() -> None:
    from recsys.cli.serve import check_port

    with pytest.raises(ConfigError, match="0 to 65535"):
        check_port("127.0.0.1", 70000)


def test_a_list_of_objects_that_is_not_json_gets_an_example_of_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example for experiment definitions is a list of objects: '["diverse"]' was refused in turn."""
    monkeypatch.setenv("RECSYS_EXPERIMENTS__DEFINITIONS", "diverse")
    with pytest.raises(ConfigError) as e:
        Settings()
    assert "a JSON list of objects, e.g. '[{\"name\": \"diverse\", ...}]'" in str(e.value)
    assert '["diverse"]' not in str(e.value)
