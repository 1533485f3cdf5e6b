"""An experiment's salt: an empty one would hash users as the name does while ``public()`` said ``salted``."""

from __future__ import annotations

import pytest

from recsys.errors import ConfigError
from recsys.experiments import parse_experiments

VARIANTS = [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]


def test_an_empty_salt_is_refused_with_the_field_named() -> None:
    with pytest.raises(ConfigError, match="'exp': salt"):
        parse_experiments([{"name": "exp", "variants": VARIANTS, "salt": ""}])


def test_a_salt_moves_users_and_is_reported() -> None:
    plain, salted = (parse_experiments([{"name": "exp", "variants": VARIANTS, **extra}]).get("exp")
                     for extra in ({}, {"salt": "run-2"}))
    assert not plain.public()["salted"] and salted.public()["salted"]
    moved = sum(plain.assign(f"u{i}").name != salted.assign(f"u{i}").name for i in range(1000))
    assert 350 < moved < 650  # an independent reshuffle moves about half
