"""``items tag --vocabulary`` refuses what ``items describe`` refuses, in the same words, and reads describe's
vocabularies too (audit "media" D4, D5): a one-label facet tagged every item with score 1.0, an empty facet was
dropped, "red"/"Red" split the softmax and a facet given twice was silently replaced; a TOML file failed on "line 1"
and the shipped names were not read at all."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from recsys.describe.vocabulary import load_vocabulary, parse_vocabulary
from recsys.encoders.tagging import read_vocabulary
from recsys.errors import ValidationFailed


def _said(e: pytest.ExceptionInfo[ValidationFailed]) -> str:
    """The message without the file it names ("vocabulary <where>: ...")."""
    return re.sub(r"^vocabulary \S+?( line \d+)?: ", "", str(e.value))


@pytest.mark.parametrize(("text", "facets"), [
    ("colour: red\npattern: plain, striped\n", {"colour": ["red"], "pattern": ["plain", "striped"]}),
    ("colour:\npattern: plain, striped\n", {"colour": [], "pattern": ["plain", "striped"]}),
    ('{"colour": [], "kind": ["shirt", "dress"]}', {"colour": [], "kind": ["shirt", "dress"]}),
    ('{"colour": ["red", "Red", "blue"]}', {"colour": ["red", "Red", "blue"]}),
    ("colour: red, blue, RED\n", {"colour": ["red", "blue", "RED"]}),
])
def test_a_fault_describe_refuses_is_refused_in_its_words(tmp_path: Path, text: str,
                                                          facets: dict[str, Any]) -> None:
    path = tmp_path / ("v.json" if text.startswith("{") else "v.txt")
    path.write_text(text)
    with pytest.raises(ValidationFailed) as tag:
        read_vocabulary(path)
    with pytest.raises(ValidationFailed) as describe:
        parse_vocabulary({"facets": facets}, "x")
    assert str(tag.value).startswith(f"vocabulary {path}") and _said(tag) == _said(describe)


@pytest.mark.parametrize(("text", "said"), [
    ("colour: red, blue\nkind: shirt, dress\ncolour: green, black\n",
     " line 3: facet 'colour' is given twice \\(first on line 1\\); put its labels on one line"),
    ('{"colour": ["red", "blue"], "colour": ["green", "black"]}', ": 'colour' is given twice"),
    (": red, blue\n", ": a facet has no name"),
])
def test_a_facet_given_twice_or_unnamed_is_refused(tmp_path: Path, text: str, said: str) -> None:
    path = tmp_path / ("v.json" if text.startswith("{") else "v.txt")
    path.write_text(text)
    with pytest.raises(ValidationFailed, match=f"vocabulary {path}{said}"):
        read_vocabulary(path)


def test_a_describe_json_vocabulary_with_a_facet_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "v.json"
    path.write_text('{"facets": {"colour": ["red", "blue"], "colour": ["green", "black"]}}')
    with pytest.raises(ValidationFailed, match="'colour' is given twice"):
        load_vocabulary(path)


def test_describes_vocabularies_are_read_for_their_labels(tmp_path: Path) -> None:
    toml = tmp_path / "shop.toml"
    toml.write_text('name = "shop"\nsentence = "{colour} {kind}"\n[facets.colour]\nlabels = ["red", " blue "]\n'
                    'omit = ["red"]\n[facets.kind]\nlabels = ["shirt", "dress"]\nphrase = "a {}"\n')
    assert read_vocabulary(toml) == {"colour": ["red", "blue"], "kind": ["shirt", "dress"]}
    as_json = tmp_path / "shop.json"
    as_json.write_text('{"name": "shop", "facets": {"colour": {"labels": ["red", "blue"]}, "kind": ["a", "b"]}}')
    assert read_vocabulary(as_json) == {"colour": ["red", "blue"], "kind": ["a", "b"]}
    for name in ("generic", "hm"):  # by name, as `items describe --vocabulary` takes them
        shipped = load_vocabulary(name)
        assert read_vocabulary(Path(name)) == {f.name: list(f.labels) for f in shipped.facets}
    toml.write_text('[facets.colour]\nlabels = ["red"]\n')
    with pytest.raises(ValidationFailed, match="facet 'colour' has one label"):
        read_vocabulary(toml)


def test_a_file_of_no_known_format_names_the_formats(tmp_path: Path) -> None:
    path = tmp_path / "shop.txt"
    path.write_text('name = "shop"\n[facets.colour]\nlabels = ["red", "blue"]\n')
    with pytest.raises(ValidationFailed, match="line 1: expected 'facet: label, label, ...'; `items tag` reads a "
                                               "JSON object .* describe` vocabulary .*generic, hm"):
        read_vocabulary(path)
