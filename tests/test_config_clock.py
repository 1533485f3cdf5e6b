"""The ranking clock setting is checked when settings are read."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from recsys.config import RankingSettings


def test_a_malformed_clock_setting_is_refused_when_settings_are_read() -> None:
    assert RankingSettings(clock="2020-09-23T00:00").clock == "2020-09-23T00:00"
    with pytest.raises(ValidationError, match="ranking.clock"):
        RankingSettings(clock="tomorrow")
