"""The audit's faults of ``recsys items describe`` on catalogues its vocabulary does not fit, on hand-made data: a
facet whose field matches no label keeps its zero-shot score (no uniform vote mixed in, no probe fitted) and is
said, a list-valued field matches its first element that is a label, misspelt keys and YAML files are refused, low
confidence is counted and warned about, and the summary line keeps its "[vocabulary, encoder]"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer

from recsys.describe import run
from recsys.describe.report import LOW_SCORE, DescribeReport, run_warnings, tally
from recsys.describe.run import facet_scores, fit_probes
from recsys.describe.transfer import LabelSource, candidate_items, field_value, field_values, label_indices
from recsys.describe.vocabulary import MAX_LABELS, load_vocabulary, parse_vocabulary
from recsys.encoders.tagging import score_labels
from recsys.encoders.text import ItemRecord
from recsys.errors import ValidationFailed


def _genre_vocab(**facet: Any) -> Any:
    return parse_vocabulary({"facets": {"genre": {"labels": ["comedy", "drama", "horror", "western"],
                                                  "field": "attributes.genres", **facet}}}, "t")


def test_a_facet_no_item_labels_keeps_its_zero_shot_score() -> None:
    vocab = _genre_vocab()
    vecs = np.eye(2, dtype=np.float32)
    label_vecs = {"genre": np.array([[0.9, 0.1], [0.1, 0.9], [0.5, 0.5], [0.0, 1.0]], np.float32)}
    nobody = LabelSource(["v1", "v2"], vecs, {"genre": np.array([-1, -1])})
    scores = facet_scores(vecs, ["q1", "q2"], vocab, label_vecs, nobody, 30)
    # uniform shares mixed in at 0.5 pulled a confident 0.40 to 0.23, under the threshold
    assert np.allclose(scores["genre"], score_labels(vecs, label_vecs["genre"]), atol=1e-6)
    somebody = LabelSource(["v1", "v2"], vecs, {"genre": np.array([0, -1])})
    assert not np.allclose(facet_scores(vecs, ["q1", "q2"], vocab, label_vecs, somebody, 30)["genre"],
                           scores["genre"])


def test_no_probe_is_fitted_on_no_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    vocab = _genre_vocab(probe_weight=0.5)
    monkeypatch.setattr(run, "fit_folded", lambda *a, **k: pytest.fail("fitted a probe on no labels"))
    for labels in ([-1, -1, -1], [2, 2, -1]):  # none, or one label: nothing to learn
        source = LabelSource(["a", "b", "c"], np.eye(3, dtype=np.float32), {"genre": np.array(labels)},
                             np.ones((3, 4), np.float32))
        assert fit_probes(vocab, source, "towers", 4, {"a"}) == {}


def test_a_facet_with_no_or_few_labelled_items_is_said() -> None:
    vocab = _genre_vocab(probe_weight=0.5)
    report = DescribeReport("enc", "t", 5, 5, 0, 0, 0, 1.0, labelled={"genre": 0})
    said = run_warnings(report, vocab, probed=True)
    assert said == ["facet 'genre': no item's attributes.genres is one of its labels, so it had no neighbour vote or "
                    "probe (zero-shot only); check the field and the labels' spelling"]
    report.labelled = {"genre": 3}
    assert run_warnings(report, vocab, probed=True) == [
        "facet 'genre': only 3 items' attributes.genres is one of its labels; its neighbour vote rests on them"]
    report.labelled = {"genre": 500}
    assert run_warnings(report, vocab, probed=True) == []
    assert "labelled" in report.to_dict() and report.to_dict()["labelled"] == {"genre": 500}


def test_a_list_valued_field_matches_its_first_element_that_is_a_label() -> None:
    genres = ["Animation", "Children's", "Comedy", "Drama"]
    toy = ItemRecord("1", attributes={"genres": genres}, media=(("image", "u"),))
    none = ItemRecord("2", attributes={"genres": []}, media=(("image", "v"),))
    plain = ItemRecord("3", attributes={"genres": "Horror"}, media=(("image", "w"),))
    assert field_values(toy, "attributes.genres") == ("animation", "children's", "comedy", "drama")
    assert field_value(toy, "attributes.genres") == "animation" and field_value(none, "attributes.genres") == ""
    # "['animation', ...]" (the list's str) matched no label, silently
    assert label_indices([toy, none, plain], "attributes.genres", ["drama", "comedy", "horror"]).tolist() == [1, -1, 2]
    assert [it.item_id for it in candidate_items([toy, none, plain], {"attributes.genres"})] == ["1", "3"]


@pytest.mark.parametrize(("text", "said"), [
    ('[facets.colour]\nlabels = ["red", "blue"]\nmin_confidance = 0.9\n',
     "facet 'colour': unknown key 'min_confidance' \\(did you mean 'min_confidence'\\?\\)"),
    ('[facets.colour]\nlabels = ["red", "blue"]\nphrse = "in {}"\n',
     "facet 'colour': unknown key 'phrse' \\(did you mean 'phrase'\\?\\)"),
    ('sentense = "{colour}"\n[facets.colour]\nlabels = ["red", "blue"]\n',
     "unknown key 'sentense' \\(did you mean 'sentence'\\?\\)"),
    ('min_confidance = 0.9\n[facets.colour]\nlabels = ["red", "blue"]\n',
     "unknown key 'min_confidance' \\(did you mean 'min_confidence'\\?\\)"),
    ('[facet.colour]\nlabels = ["red", "blue"]\n', "unknown key 'facet' \\(did you mean 'facets'\\?\\)"),
    ('[facets.colour]\nlabels = ["red", "blue"]\nzzz = 1\n', "facet 'colour': unknown key 'zzz'; keys are labels, "),
    ('[facets.colour]\nlabels = ["navy-blue", "navy blue", "red"]\n',
     "facet 'colour': labels 'navy-blue' and 'navy blue' are the same label"),
])
def test_unknown_keys_and_labels_equal_as_field_values_are_refused(tmp_path: Path, text: str, said: str) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(ValidationFailed, match=f"^vocabulary {path}: {said}"):
        load_vocabulary(path)


def test_yaml_and_too_many_labels_are_refused(tmp_path: Path) -> None:
    for suffix in (".yaml", ".yml"):
        path = tmp_path / f"mine{suffix}"
        path.write_text("name: mine\nfacets:\n  colour:\n    labels: [red, blue]\n")
        with pytest.raises(ValidationFailed, match="YAML is not supported; write TOML or JSON"):
            load_vocabulary(path)
    with pytest.raises(ValidationFailed, match=f"facet 'f' has {MAX_LABELS + 1} labels; at most {MAX_LABELS}"):
        parse_vocabulary({"facets": {"f": [f"l{i}" for i in range(MAX_LABELS + 1)]}}, "t")


def _facets(colour: float, kind: float, pattern: str = "plain") -> list[dict[str, Any]]:
    return [{"facet": "colour", "label": "red", "score": colour, "used": True},
            {"facet": "pattern", "label": pattern, "score": 0.99, "used": True},
            {"facet": "kind", "label": "toy", "score": kind, "used": kind >= 0.25},
            {"facet": "material", "label": "wood", "score": 0.3, "used": False}]


def test_low_confidence_is_counted_and_warned_about() -> None:
    generic = load_vocabulary("generic")
    fits, poor = DescribeReport("enc", "generic", 20, 20, 0, 0, 0, 1.0), DescribeReport("e", "generic", 20, 20, 0, 0,
                                                                                         0, 1.0)
    for _ in range(20):
        tally(fits, generic, _facets(0.9, 0.45))  # half its written labels low: one good, one not
        tally(poor, generic, _facets(0.3, 0.35))  # "Red toy." on two guesses
    assert fits.facets == {"colour": {"written": 20, "low": 0}, "kind": {"written": 20, "low": 20}}  # plain: omitted
    assert poor.facets["colour"] == {"written": 20, "low": 20} and poor.low_confidence == 20
    assert fits.low_confidence == 20  # half or more
    tally(fits, generic, _facets(0.9, 0.1, "striped"))  # striped 0.99 + red 0.9, kind not confident: not low
    assert fits.low_confidence == 20 and fits.facets["pattern"] == {"written": 1, "low": 0}
    said = run_warnings(poor, generic, probed=False)
    assert f"facet 'colour': 20 of its 20 written labels scored under {LOW_SCORE}" in said
    assert said[-1].startswith("20 of 20 descriptions rest mostly on labels scored under 0.5: vocabulary 'generic' "
                               "may not fit this catalogue's photos")
    one = DescribeReport("enc", "generic", 1, 1, 0, 0, 0, 1.0)
    tally(one, generic, _facets(0.3, 0.3))
    assert run_warnings(one, generic, probed=False) == []  # one item says little


def test_the_summary_keeps_brackets_and_says_replaced_and_warnings() -> None:
    from recsys.cli._common import err
    from recsys.cli.describe import say_report

    report = DescribeReport("recsys-lite@2026", "generic", 3, 2, 0, 0, 1, 1.5, errors={"[odd]": "[bad] image"},
                            replaced={"hm": 2}, facets={"colour": {"written": 2, "low": 0}},
                            warnings=["facet 'kind': [x] scored low"])
    with err.capture() as out:
        say_report(report)
    text = out.get()
    assert "1.5s [generic, recsys-lite@2026]; labels written per facet: colour 2" in text
    assert "2 descriptions written with vocabulary 'hm' were replaced" in text
    assert "warning: facet 'kind': [x] scored low" in text and "  [odd]: [bad] image" in text


def test_ctrl_c_says_what_was_written(monkeypatch: pytest.MonkeyPatch) -> None:
    import recsys.config
    import recsys.describe
    from recsys.cli import describe as cli
    from recsys.cli._common import err

    chunks = [0]

    def stopped(*a: Any, progress: Any, **k: Any) -> None:
        for done in range(0, chunks[0] + 1):
            progress("items", done * 1024, 3000)
        raise KeyboardInterrupt

    monkeypatch.setattr(recsys.describe, "describe_items", stopped)
    monkeypatch.setattr(cli, "open_store", lambda: None)
    monkeypatch.setattr(recsys.config, "get_settings", lambda: None)
    for chunks[0], said in ((0, "interrupted; nothing written"),
                            (1, "interrupted; the first 1024 of 3000 items' descriptions were written")):
        with err.capture() as out, pytest.raises(typer.Exit) as exit_:
            cli.items_describe(vocabulary="generic")
        assert exit_.value.exit_code == 130 and said in out.get()
