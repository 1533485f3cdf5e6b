"""Bad settings: refused when read, and said with the environment variable's name, not a page of traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.cli import settings_problem
from recsys.config import Settings


@pytest.mark.parametrize(("var", "value", "said"), [
    ("RECSYS_INDEX__NPROBE", "abc", "RECSYS_INDEX__NPROBE: Input should be a valid integer"),
    ("RECSYS_INDEX__KEEP_GENERATIONS", "0", "RECSYS_INDEX__KEEP_GENERATIONS: Input should be greater than or equal"),
    ("RECSYS_RANKING__DIVERSITY", "nan", "RECSYS_RANKING__DIVERSITY"),
    ("RECSYS_API__WORKER_THREADS", "0", "RECSYS_API__WORKER_THREADS"),
    ("RECSYS_ENCODER__MODALITY_WEIGHTS", '{"text": NaN, "image": 1}', "weights must be finite"),
    ("RECSYS_ENCODER__MODALITY_WEIGHTS", '{"txt": 1}', "unknown modality ['txt']"),
    ("RECSYS_RANKING__PARAMS", '{"similar_k": -5}', "RECSYS_RANKING__PARAMS: Value error, ranking parameter"),
])
def test_a_bad_setting_names_its_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str, said: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(Exception) as exc:
        Settings()
    message = settings_problem(exc.value)
    assert message is not None and said in message, message


def test_other_errors_are_not_taken_for_settings() -> None:
    assert settings_problem(ValueError("x")) is None


def test_a_home_that_is_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    f = tmp_path / "afile"
    f.write_text("x")
    monkeypatch.setenv("RECSYS_HOME", str(f))
    with pytest.raises(Exception) as exc:
        Settings()
    message = settings_problem(exc.value)
    assert message is not None and message.startswith(f"RECSYS_HOME: Value error, {f} is a file")


@pytest.mark.parametrize(("var", "said"), [
    ("RECSYS_DATABASE__URL", "did you mean RECSYS_DATABASE_URL?"),  # would have served the local SQLite file
    ("RECSYS_EXPERIMENTS__FIEL", "did you mean RECSYS_EXPERIMENTS__FILE?"),
    ("RECSYS_RANKING_SEED", "did you mean RECSYS_RANKING__SEED?"),
    ("RECSYS_HOMEE", "did you mean RECSYS_HOME?"),
    ("RECSYS_RANKING__NO_SUCH_KNOB", "its settings are"),
])
def test_a_misspelt_variable_is_refused_not_ignored(monkeypatch: pytest.MonkeyPatch, var: str, said: str) -> None:
    from recsys.errors import ConfigError

    monkeypatch.setenv(var, "1")
    with pytest.raises(ConfigError, match=said.replace("?", r"\?")):
        Settings()


def test_other_recsys_variables_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RECSYS_LOG_LEVEL", "RECSYS_TEST_POSTGRES_URL", "RECSYS_SOMETHING_ELSE_ENTIRELY"):
        monkeypatch.setenv(var, "x")
    monkeypatch.setenv("RECSYS_RANKING__SEED", "3")
    assert Settings().ranking.seed == 3


def test_passwords_are_hidden_in_printed_urls() -> None:
    from recsys.config import without_password

    assert without_password("redis://:s3cret@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert without_password("redis://me:s3cret@h:1") == "redis://me:***@h:1"
    assert without_password("memory://") == "memory://"


def test_a_bad_rate_limit_storage_does_not_print_its_password() -> None:
    from recsys.api.limits import RateLimiter
    from recsys.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        RateLimiter(10, "redis+bogus://:s3cret@h:1")._make_storage()
    assert "s3cret" not in str(e.value) and ":***@h:1" in str(e.value)
