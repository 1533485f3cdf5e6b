"""The config audit's defects: passwords in a URL's query, log variables, empty and malformed values, whole-section
JSON, ranges. Each bad value is refused when read, in one line naming its variable."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from recsys.cli import settings_problem
from recsys.config import Settings, without_password
from recsys.errors import ConfigError
from tests.conftest import run_main


def _main_logging(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                  *args: str) -> tuple[int, str, int]:
    """run_main with a root logger without handlers, as in a real process (basicConfig acts only then): its exit
    status, stderr and the root's level it set (restored after)."""
    level = logging.root.level
    monkeypatch.setattr(logging.root, "handlers", [])
    try:
        code, err = run_main(monkeypatch, capsys, *args)
        return code, err, logging.root.level
    finally:
        logging.root.setLevel(level)


def _refusal(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> str:
    monkeypatch.setenv(var, value)
    with pytest.raises(Exception) as exc:
        Settings()
    if isinstance(exc.value, ConfigError):
        return exc.value.message
    message = settings_problem(exc.value)
    assert message is not None, exc.value
    return message


# 1: a password in the query string
@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql+psycopg://app@db:5432/shop?password=s3cret", "postgresql+psycopg://app@db:5432/shop?password=***"),
    ("postgresql+psycopg://app@db/shop?sslmode=require&password=s3cret&application_name=x",
     "postgresql+psycopg://app@db/shop?sslmode=require&password=***&application_name=x"),
    ("redis://127.0.0.1:6379/0?password=s3cret", "redis://127.0.0.1:6379/0?password=***"),
    ("redis://u:s3cret@h:1/0?PASSWORD=s3cret", "redis://u:***@h:1/0?PASSWORD=***"),
    ("postgresql+psycopg://app@db/shop?sslpassword=s3cret", "postgresql+psycopg://app@db/shop?sslpassword=***"),
    ("http://[::1/x?password=s3cret", "http://[::1/x?password=***"),  # unparsable
])
def test_a_password_in_the_query_is_hidden(url: str, shown: str) -> None:
    assert without_password(url) == shown


def test_recsys_config_hides_query_passwords(home: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from recsys.cli.data import config

    monkeypatch.setenv("RECSYS_DATABASE_URL", "postgresql+psycopg://app@127.0.0.1:5999/shop?password=s3cretQS")
    monkeypatch.setenv("RECSYS_API__RATE_LIMIT_STORAGE", "redis://127.0.0.1:6379/0?password=s3cretRD")
    config()
    out = capsys.readouterr().out
    assert "s3cret" not in out and out.count("password=***") == 2, out


# 2 and 8: the logging variables
@pytest.mark.parametrize("value", ["debug", "Info", "WARNING"])
def test_a_log_level_in_any_case_runs(value: str, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RECSYS_LOG_LEVEL", value)
    code, err, level = _main_logging(monkeypatch, capsys, "--version")
    assert code == 0 and level == logging.getLevelName(value.upper()), err


@pytest.mark.parametrize("value", ["verbose", ""])
def test_a_bad_log_level_is_one_line(value: str, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RECSYS_LOG_LEVEL", value)
    code, err, _ = _main_logging(monkeypatch, capsys, "--version")
    assert code == 2 and err.count("\n") == 1 and "RECSYS_LOG_LEVEL" in err and "debug, info" in err, err


@pytest.mark.parametrize(("var", "value"), [("RECSYS_LOG_LEVEL", "verbose"), ("RECSYS_LOG_FORMAT", "plain"),
                                            ("RECSYS_LOG_FORMAT", "")])
def test_serve_refuses_a_bad_log_variable_first(var: str, value: str, home: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys.cli.serve import run_serve

    def serve(*_: object, **__: object) -> None:
        raise AssertionError(f"served with {var}={value!r}")

    monkeypatch.setattr("uvicorn.run", serve)
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=var):
        run_serve(Settings(), port=0)
    assert not home.exists()  # refused before the store was touched


@pytest.mark.parametrize(("var", "value"), [("RECSYS_LOG_LEVEL", "loud"), ("RECSYS_LOG_FORMAT", "TXT")])
def test_app_from_env_refuses_a_bad_log_variable(var: str, value: str, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    from recsys.api.app import app_from_env

    monkeypatch.setenv(var, value)
    with pytest.raises(SystemExit) as exc:
        app_from_env()
    assert exc.value.code == 2 and var in caplog.text


def test_log_format_and_level_in_any_case() -> None:
    from recsys.config_checks import log_format, log_level

    assert log_format({"RECSYS_LOG_FORMAT": "TEXT"}, "json") == "text"
    assert log_format({"RECSYS_LOG_FORMAT": "Json"}, "text") == "json"
    assert log_format({}, "text") == "text"
    assert log_level({"RECSYS_LOG_LEVEL": "debug"}, "INFO") == "DEBUG"
    assert log_level({}, "WARNING") == "WARNING"


# 3: empty values
@pytest.mark.parametrize("var", ["RECSYS_DATABASE_URL", "RECSYS_HOME"])
def test_an_empty_value_is_refused(var: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert f"{var} is set but empty" in _refusal(monkeypatch, var, "")


# 5: malformed database URLs
@pytest.mark.parametrize("url", [
    "notaurl", "postgresql+psycopg://postgres:pw@127.0.0.1:54x2/db", "postgresql+pyscopg://postgres@127.0.0.1/db",
    "mysql://u@127.0.0.1/db", "postgresql+psycopg://u:pw@h/db?connect_timeout=abc",
    "postgresql+psycopg://u@h/db?conect_timeout=5&password=pw",
])
def test_a_malformed_database_url_is_one_line(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    said = _refusal(monkeypatch, "RECSYS_DATABASE_URL", url)
    assert said.startswith("RECSYS_DATABASE_URL ") and "postgresql+psycopg://USER" in said and "pw" not in said
    assert "\n" not in said


@pytest.mark.parametrize("url", ["sqlite:////tmp/x/recsys.db", "postgresql://u@h/db",
                                 "postgresql+psycopg://u:p%40x@h1,h2:5433/db?sslmode=require&connect_timeout=3"])
def test_a_good_database_url_is_kept(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_DATABASE_URL", url)
    assert Settings().db_url == url


def test_the_cli_says_a_malformed_database_url_in_one_line(home: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("RECSYS_DATABASE_URL", "postgresql+pyscopg://postgres@127.0.0.1/db")
    code, err = run_main(monkeypatch, capsys, "config")
    assert code == 2 and err.startswith("error [config]: RECSYS_DATABASE_URL") and err.count("\n") == 1, err


# 4 (at the source), 6 and 9: ranges and valid values
@pytest.mark.parametrize(("var", "value", "said"), [
    ("RECSYS_API__SESSION_HOURS", "inf", "RECSYS_API__SESSION_HOURS"),
    ("RECSYS_API__SESSION_HOURS", "1e300", "RECSYS_API__SESSION_HOURS"),
    ("RECSYS_STORE__MAX_BAD_FRACTION", "nan", "RECSYS_STORE__MAX_BAD_FRACTION"),
    ("RECSYS_STORE__MAX_BAD_FRACTION", "5", "RECSYS_STORE__MAX_BAD_FRACTION"),
    ("RECSYS_STORE__MAX_BAD_FRACTION", "-0.1", "RECSYS_STORE__MAX_BAD_FRACTION"),
    ("RECSYS_API__IMAGE_FORMATS", '["JPG"]', "did you mean JPEG?"),
    ("RECSYS_API__IMAGE_FORMATS", '["PNG", "nope"]', "'NOPE', which is not an image format"),
    ("RECSYS_ENCODER__TEXT_FIELDS", '{"title": -1}', "weights are finite and >= 0"),
    ("RECSYS_ENCODER__TEXT_FIELDS", '{"title": NaN}', "weights are finite and >= 0"),
    ("RECSYS_ENCODER__TEXT_FIELDS", '{"titel": 1}', "'titel', which is no item text field"),
    ("RECSYS_ENCODER__TEXT_FIELDS", '{"attributes.": 1}', "which is no item text field"),
    ("RECSYS_STORE__BATCH_SIZE", "-5", "RECSYS_STORE__BATCH_SIZE"),
    ("RECSYS_STORE__BATCH_SIZE", "0", "RECSYS_STORE__BATCH_SIZE"),
    ("RECSYS_INDEX__RERANK_FACTOR", "0", "RECSYS_INDEX__RERANK_FACTOR"),
    ("RECSYS_INDEX__TRAIN_SAMPLE", "-1", "RECSYS_INDEX__TRAIN_SAMPLE"),
    ("RECSYS_API__FORWARDED_ALLOW_IPS", "not-an-address", "RECSYS_API__FORWARDED_ALLOW_IPS has 'not-an-address'"),
])
def test_a_value_that_cannot_work_is_refused(var: str, value: str, said: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert said in _refusal(monkeypatch, var, value)


def test_values_that_work_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    for var, value in [("RECSYS_API__IMAGE_FORMATS", '["jpeg", " png"]'), ("RECSYS_STORE__MAX_BAD_FRACTION", "1"),
                       ("RECSYS_API__FORWARDED_ALLOW_IPS", "10.0.0.1, 10.0.0.0/8,::1"),
                       ("RECSYS_API__SESSION_HOURS", str(24 * 366)),
                       ("RECSYS_ENCODER__TEXT_FIELDS",
                        '{"title": 1, "attributes.colour": 0, "generated_description": 2}')]:
        monkeypatch.setenv(var, value)
    s = Settings()
    assert s.api.image_formats == ["JPEG", "PNG"] and s.store.max_bad_fraction == 1
    monkeypatch.setenv("RECSYS_API__FORWARDED_ALLOW_IPS", "*")
    assert Settings().api.forwarded_allow_ips == "*"


# 7: a whole section as JSON
@pytest.mark.parametrize(("var", "value", "said"), [
    ("RECSYS_RANKING", '{"exclude_purchsed": true}', "did you mean 'exclude_purchased'?"),
    ("RECSYS_API", '{"auth": false, "rate_limit_per_minut": 10}', "did you mean 'rate_limit_per_minute'?"),
])
def test_a_misspelt_key_of_a_section_is_refused(var: str, value: str, said: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    assert said in _refusal(monkeypatch, var, value)


def test_a_section_that_is_not_json_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    said = _refusal(monkeypatch, "RECSYS_API", "auth=false")
    assert said.startswith("RECSYS_API is not JSON") and "_NamedEnvSource" not in said, said


def test_a_section_as_json_is_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_RANKING", '{"exclude_purchased": true}')
    assert Settings().ranking.exclude_purchased is True
