"""Every ``RECSYS_SECTION__FIELD`` that recsys names (in a message, a docstring, a comment) is a setting it accepts:
a user told to change a variable recsys refuses gets a config error on every command."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

from recsys.config import Settings
from recsys.ranking.params import RankingParams

RECSYS = Path(__file__).resolve().parents[1] / "recsys"
NAME = re.compile(r"\bRECSYS_([A-Z0-9_]+?)__([A-Z0-9_]+)\b")
REFUSED_EXAMPLES = {("config_checks.py", "RECSYS_DATABASE__URL"), ("config_checks.py", "RECSYS_EXPERIMENTS__FIEL")}
"""Names quoted on purpose as what the environment check refuses."""
PARAM = re.compile(r"RECSYS_RANKING__PARAMS='\{\\?\"(\w+)\\?\"")


def _fields(section: str) -> set[str]:
    field = Settings.model_fields.get(section)
    return set(getattr(field.annotation, "model_fields", {})) if field is not None else set()


def test_every_nested_setting_named_in_recsys_exists() -> None:
    wrong = []
    for path in sorted(RECSYS.rglob("*.py")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for m in NAME.finditer(line):
                section, field = m.group(1).lower(), m.group(2).lower()
                if field not in _fields(section) and (path.name, m.group(0)) not in REFUSED_EXAMPLES:
                    wrong.append(f"{path.relative_to(RECSYS.parent)}:{n}: RECSYS_{m.group(1)}__{m.group(2)}")
    assert wrong == [], "names no setting: " + ", ".join(wrong)


def test_every_ranking_param_named_in_recsys_exists() -> None:
    """``RECSYS_RANKING__PARAMS='{"key": ...}'`` (the only way to a RankingParams field, e.g. cobuy) names one."""
    known = {f.name for f in fields(RankingParams)}
    wrong = []
    for path in sorted(RECSYS.rglob("*.py")):
        for m in PARAM.finditer(path.read_text(encoding="utf-8")):
            if m.group(1) not in known:
                wrong.append(f"{path.relative_to(RECSYS.parent)}: {m.group(1)}")
    assert wrong == [], "names no ranking parameter: " + ", ".join(wrong)
