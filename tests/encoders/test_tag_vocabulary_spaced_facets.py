"""A JSON vocabulary for ``items tag`` naming one facet twice but for surrounding spaces ("colour" and "colour ") is
refused, as the text format refuses a facet given twice: once stripped, one label list silently replaced the other."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.encoders.tagging import read_vocabulary
from recsys.errors import ValidationFailed


@pytest.mark.parametrize("text", [
    '{"colour": ["red", "blue"], "colour ": ["x", "y"]}',
    '{" colour": ["red", "blue"], "kind": ["a", "b"], "colour\\t": ["x", "y"]}',
    '{"facets": {"colour": ["red", "blue"], " colour ": {"labels": ["x", "y"]}}}',
])
def test_a_facet_repeated_with_spaces_is_refused_in_one_line(tmp_path: Path, text: str) -> None:
    path = tmp_path / "v.json"
    path.write_text(text)
    with pytest.raises(ValidationFailed, match=f"vocabulary {path}: facet 'colour' is given twice") as e:
        read_vocabulary(path)
    assert "give it once" in str(e.value) and "\n" not in str(e.value)


def test_facets_that_differ_beyond_spaces_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "v.json"
    path.write_text('{" colour ": ["red", "blue"], "colours": ["x", "y"]}')
    assert read_vocabulary(path) == {"colour": ["red", "blue"], "colours": ["x", "y"]}
