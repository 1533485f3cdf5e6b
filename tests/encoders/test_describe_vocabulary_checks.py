"""Vocabulary checks for typos that changed what is written, and confidence that means something for a facet of few
labels: a facet of n labels always scores its best at least 1/n, so a threshold of 0.25 held nothing back for n <= 4,
and a facet of one label called every item by it with score 1.0."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.describe.vocabulary import CHANCE_LIFT, load_vocabulary, parse_vocabulary
from recsys.errors import ValidationFailed

_TWO = '[facets.colour]\nlabels = ["red", "blue"]\n'


@pytest.mark.parametrize(("text", "said"), [
    ('neighbours = true\n' + _TWO, "neighbours must be an integer >= 0 .*not True"),
    ('min_confidence = true\n' + _TWO, "min_confidence must be a number within 0 and 1, not True"),
    ('neighbour_weight = false\n' + _TWO, "neighbours must be .* neighbour_weight .*, not 30 and False"),
    (_TWO + "min_confidence = true\n", "facet 'colour': min_confidence must be a number within 0 and 1, not True"),
    (_TWO + 'field = "category"\nprobe_weight = true\n', "facet 'colour': probe_weight must be a number.*not True"),
    (_TWO + 'field = "category"\nprobe_weight = 0.5\nprobe_hidden = true\n',
     "facet 'colour': probe_hidden must be an integer 0..4096, not True"),
    ('[facets.pattern]\nlabels = ["plain", "striped"]\nomit = ["Plain"]\n',
     "facet 'pattern': omit 'Plain' is not one of its labels \\(did you mean 'plain'\\?\\)"),
    ('[facets.pattern]\nlabels = ["stripe", "plain"]\nwords = { stripes = "striped" }\n',
     "facet 'pattern': words key 'stripes' is not one of its labels; labels are \\['stripe', 'plain'\\]"),
    ('[facets.colour]\nlabels = ["red", "Red", "blue"]\n',
     "facet 'colour': labels 'red' and 'Red' differ only in case"),
    ('sentence = "{colour} {"\n' + _TWO, "sentence '\\{colour\\} \\{' has a brace outside a \\{facet\\} slot"),
    ('sentence = "{colour}}."\n' + _TWO, "sentence '\\{colour\\}\\}.' has a brace outside"),
    ('[facets.animal]\nlabels = ["zebra"]\n', "facet 'animal' has one label \\('zebra'\\).*two labels or more"),
    ('[facets.animal]\nlabels = ["zebra", " zebra "]\n', "facet 'animal' has one label"),
])
def test_a_typo_is_refused_naming_the_file_facet_and_value(tmp_path: Path, text: str, said: str) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(ValidationFailed, match=f"vocabulary {path}: {said}"):
        load_vocabulary(path)


def test_omit_and_words_naming_labels_are_applied() -> None:
    v = parse_vocabulary({"facets": {"pattern": {"labels": ["plain", "stripe"], "omit": [" plain"],
                                                 "words": {"stripe": "striped"}}}}, "t")
    assert v.compose({"pattern": "stripe"}) == "Striped." and v.compose({"pattern": "plain"}) == ""


def _facet_of(n: int, **extra: object) -> dict[str, object]:
    return {"labels": [f"l{i}" for i in range(n)], **extra}


@pytest.mark.parametrize(("n", "needed"), [(2, 0.625), (3, 1.25 / 3), (4, 0.3125), (5, 0.25), (39, 0.25)])
def test_a_small_facets_label_must_beat_its_uniform_share(n: int, needed: float) -> None:
    v = parse_vocabulary({"facets": {"f": _facet_of(n)}}, "t")  # the default min_confidence, 0.25
    f = v.facets[0]
    assert v.threshold(f) == pytest.approx(needed)
    assert v.threshold(f) > 1 / n  # a guess (the uniform share) is never confident
    assert v.threshold(f, 0.9) == 0.9  # a stricter threshold stands
    assert v.threshold(f, 0.0) == 0.0  # 0: the best label whatever its score, as before


def test_the_shipped_vocabularies_thresholds_are_unchanged() -> None:
    # describe_hm's figures hang on these thresholds (which items are described, with which words): every facet
    # of the shipped vocabularies has 5 labels or more, where CHANCE_LIFT / n is at most the default 0.25
    for name in ("hm", "generic"):
        v = load_vocabulary(name)
        for f in v.facets:
            configured = f.min_confidence if f.min_confidence is not None else v.min_confidence
            assert len(f.labels) >= 5 and CHANCE_LIFT / len(f.labels) <= configured, (name, f.name)
            assert v.threshold(f) == configured, (name, f.name)
