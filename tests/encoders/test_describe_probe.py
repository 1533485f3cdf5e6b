"""The supervised probe (recsys.describe.probe) on generated features with a known answer: it learns a label that
only some columns carry, reads only the blocks it is given, leaves imageless rows uniform, and the vocabulary and
facet scoring wire it in."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.describe.probe import FoldedProbe, feature_columns, fit_folded, fit_probe, lite_blocks
from recsys.describe.run import facet_scores
from recsys.describe.transfer import LabelSource
from recsys.describe.vocabulary import parse_vocabulary
from recsys.errors import ValidationFailed


def _data(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 6) features whose columns 0-1 carry the label (3 classes) and 2-5 are noise; every 10th label unknown."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    centres = np.array([[3.0, 0.0], [0.0, 3.0], [-3.0, -3.0]])
    x = np.c_[centres[labels] + rng.normal(0, 0.5, (n, 2)), rng.normal(0, 1, (n, 4))].astype(np.float32)
    labels[::10] = -1
    return x, labels


def test_probe_learns_the_label_and_ignores_unknown_rows() -> None:
    x, y = _data()
    probe = fit_probe(x, y, 4, np.arange(6))
    assert probe is not None
    test_x, test_y = _data(60, seed=1)
    p = probe.predict(test_x)
    assert p.shape == (60, 4) and np.allclose(p.sum(1), 1.0)
    known = test_y >= 0
    assert (p.argmax(1)[known] == test_y[known]).mean() > 0.95
    assert p[:, 3].max() < 0.05  # nobody carries label 3


def test_probe_reads_only_its_columns_and_leaves_imageless_rows_uniform() -> None:
    x, y = _data()
    noise_only = fit_probe(x, y, 3, np.arange(2, 6))
    assert noise_only is not None and noise_only.weight.shape == (4, 3)
    assert (noise_only.predict(_data(60, 1)[0]).argmax(1) == _data(60, 1)[1]).mean() < 0.7
    assert np.allclose(noise_only.predict(np.zeros((2, 6), np.float32)), 1 / 3)


def test_one_label_is_nothing_to_learn() -> None:
    x, _ = _data(20)
    assert fit_probe(x, np.zeros(20, np.int64), 3, np.arange(6)) is None


def test_feature_columns_pick_lite_blocks_and_fall_back_to_all() -> None:
    blocks = lite_blocks()
    dim = max(end for _, end in blocks.values())
    cols = feature_columns("recsys-lite-towers/f1", dim, ["stages", "colour"])
    assert len(cols) == np.diff(blocks["stages"])[0] + np.diff(blocks["colour"])[0]
    assert cols[0] == blocks["stages"][0] and cols[-1] == blocks["colour"][1] - 1
    assert len(feature_columns("recsys-lite-towers/f1", dim, [])) == dim
    assert len(feature_columns("open_clip/ViT-B-32", 512, ["stages"])) == 512  # other towers: one embedding


def test_facet_scores_mix_the_probe_by_its_weight() -> None:
    vocab = parse_vocabulary({"facets": {"colour": {"labels": ["a", "b", "c", "d"], "field": "attributes.colour",
                                                    "probe_weight": 1.0}}}, "test")
    x, y = _data()
    probe = fit_probe(x, y, 4, np.arange(6))
    assert probe is not None
    vecs = np.eye(2, dtype=np.float32)
    label_vecs = {"colour": np.eye(4, 2, dtype=np.float32)}
    source = LabelSource(["v1", "v2"], vecs, {"colour": np.array([0, 1])})
    scores = facet_scores(vecs, ["q1", "q2"], vocab, label_vecs, source, 1, x[:2], {"colour": FoldedProbe((probe,))})
    assert np.allclose(scores["colour"], probe.predict(x[:2]), atol=1e-6)  # weight 1: the probe alone
    without = facet_scores(vecs, ["q1", "q2"], vocab, label_vecs, source, 1)
    assert not np.allclose(without["colour"], scores["colour"])


def test_vocabulary_checks_probe_options() -> None:
    assert parse_vocabulary({"facets": {"colour": ["a", "b"]}}, "t").facets[0].probe_weight == 0.0
    with pytest.raises(ValidationFailed, match="probe_weight"):
        parse_vocabulary({"facets": {"colour": {"labels": ["a"], "probe_weight": 0.5}}}, "t")  # no field
    with pytest.raises(ValidationFailed, match="probe_features"):
        parse_vocabulary({"facets": {"colour": {"labels": ["a"], "field": "category", "probe_features": "all"}}}, "t")


def test_a_described_item_is_never_scored_by_a_probe_that_read_its_label() -> None:
    x, y = _data()
    ids = [f"i{j}" for j in range(len(x))]
    assert len(fit_folded(x, y, ids, {"other"}, 3, np.arange(6)).probes) == 1  # type: ignore[union-attr]
    x[0, :2] = [3.0, 0.0]  # item i0 looks like label 0 but is labelled 2: only its own label could teach that
    y[0] = 2
    folded = fit_folded(x, y, ids, set(ids[:5]), 3, np.arange(6))
    assert folded is not None and len(folded.probes) == 5
    assert folded.predict(x[:1], ["i0"])[0].argmax() == 0
    rows = folded.predict(x[:5], ids[:5])
    assert rows.shape == (5, 3) and np.allclose(rows.sum(1), 1.0)


def test_the_vocabularys_probe_blocks_are_the_probes() -> None:
    from recsys.describe.probe import lite_blocks
    from recsys.describe.vocabulary import PROBE_BLOCKS

    assert set(PROBE_BLOCKS) == {*lite_blocks(), "pixels"}
