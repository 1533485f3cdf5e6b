"""``recsys items describe --item ID`` fits only the probe folds that hold a described item: one item costs one
fit per probed facet, not five, and the items described get exactly the scores a probe per fold gave them."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.describe import probe as probe_module
from recsys.describe.probe import FoldedProbe, _fold, fit_folded, fit_probe
from recsys.describe.run import fit_probes
from recsys.describe.transfer import LabelSource
from recsys.describe.vocabulary import parse_vocabulary


def _data(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(n, 6) features whose columns 0-1 carry the label (3 classes), every 10th label unknown, and item ids."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    centres = np.array([[3.0, 0.0], [0.0, 3.0], [-3.0, -3.0]])
    x = np.c_[centres[labels] + rng.normal(0, 1.5, (n, 2)), rng.normal(0, 1, (n, 4))].astype(np.float32)
    labels[::10] = -1
    return x, labels, [f"item-{j:05d}" for j in range(n)]


@pytest.fixture
def fits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of labelled rows of each probe fit, in order."""
    seen: list[int] = []

    def counting(features: np.ndarray, labels: np.ndarray, *args: object, **kwargs: object) -> object:
        seen.append(int((labels >= 0).sum()))
        return fit_probe(features, labels, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(probe_module, "fit_probe", counting)
    return seen


def _reference(x: np.ndarray, y: np.ndarray, ids: list[str], described: set[str], hidden: int) -> np.ndarray:
    """What every described item got when all five folds were fitted: its own fold's probe, fitted without the
    described items of that fold."""
    fold = _fold(ids, 5)
    out = np.empty((len(ids), 3), np.float32)
    for f in range(5):
        probe = fit_probe(x, np.where(np.isin(ids, list(described)) & (fold == f), -1, y), 3, np.arange(6),
                          hidden=hidden)
        assert probe is not None
        out[fold == f] = probe.predict(x[fold == f])
    return out[[ids.index(i) for i in sorted(described)]]


def test_one_described_item_costs_one_fit(fits: list[int]) -> None:
    x, y, ids = _data()
    folded = fit_folded(x, y, ids, {"item-00011"}, 3, np.arange(6))
    assert folded is not None and len(fits) == 1
    assert fits[0] == int((y >= 0).sum()) - 1  # all labels but the item's own
    assert sum(p is not None for p in folded.probes) == 1


def test_only_the_folds_of_the_described_items_are_fitted(fits: list[int]) -> None:
    x, y, ids = _data()
    described = {"item-00011", "item-00012", "item-00013"}
    wanted = set(_fold(sorted(described), 5).tolist())
    done: list[tuple[int, int]] = []
    folded = fit_folded(x, y, ids, described, 3, np.arange(6), progress=lambda d, t: done.append((d, t)))
    assert folded is not None and len(fits) == len(wanted) < 5
    assert {f for f, p in enumerate(folded.probes) if p is not None} == wanted
    assert done[-1] == (len(wanted), len(wanted))  # progress runs to its end


def test_an_unlabelled_described_item_still_gets_its_folds_probe(fits: list[int]) -> None:
    x, y, ids = _data()
    other = next(f"new-{j}" for j in range(100) if _fold([f"new-{j}"], 5)[0] != _fold(["item-00011"], 5)[0])
    folded = fit_folded(x, y, ids, {"item-00011", other}, 3, np.arange(6))
    assert folded is not None and len(fits) == 2
    assert folded.predict(x[:1], [other]).shape == (1, 3)


def test_a_row_of_a_fold_never_fitted_is_refused() -> None:
    x, y, ids = _data()
    folded = fit_folded(x, y, ids, {"item-00011"}, 3, np.arange(6))
    assert folded is not None
    other = next(i for i in ids if _fold([i], 5)[0] != _fold(["item-00011"], 5)[0])
    with pytest.raises(ValueError, match="was not fitted"):
        folded.predict(x[:2], ["item-00011", other])


@pytest.mark.parametrize("hidden", [0, 8])
def test_the_described_items_scores_are_those_of_a_probe_per_fold(hidden: int,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe_module, "MLP_MIN_STEPS", 20)  # the hidden layer's fits, seeded: few steps suffice
    x, y, ids = _data()
    sets = [{"item-00011"}, {"item-00010", "item-00011", "item-00150"}, set(ids[:40])]
    for described in sets if hidden == 0 else sets[1:2]:
        folded = fit_folded(x, y, ids, described, 3, np.arange(6), hidden=hidden)
        assert isinstance(folded, FoldedProbe)
        names = sorted(described)
        got = folded.predict(x[[ids.index(i) for i in names]], names)
        assert np.allclose(got, _reference(x, y, ids, described, hidden), atol=1e-6)


def test_describe_one_item_fits_one_probe_per_probed_facet(fits: list[int]) -> None:
    vocab = parse_vocabulary({"facets": {
        "colour": {"labels": ["a", "b", "c"], "field": "attributes.colour", "probe_weight": 0.5},
        "type": {"labels": ["x", "y", "z"], "field": "category", "probe_weight": 0.5}}}, "t")
    x, y, ids = _data()
    source = LabelSource(ids, np.zeros((len(ids), 2), np.float32), {"colour": y, "type": y}, x)
    probes = fit_probes(vocab, source, "other-towers", 6, {"item-00011"})
    assert set(probes) == {"colour", "type"} and len(fits) == 2  # was 10: five folds by two facets
