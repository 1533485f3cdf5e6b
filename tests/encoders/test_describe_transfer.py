"""Label transfer (recsys.describe.transfer) on hand-made vectors with a known answer: neighbours vote for their own
labels, an item never votes for itself, excluded items never vote, and vocabularies declare it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys.describe import load_vocabulary
from recsys.describe.transfer import LabelSource, candidate_items, field_value, label_indices, mix, neighbour_votes
from recsys.encoders.text import ItemRecord
from recsys.errors import ValidationFailed

E1, E2, E3 = np.eye(3, dtype=np.float32)


def _source() -> LabelSource:
    vecs = np.stack([E1, 0.9 * E1 + 0.1 * E3, E2, 0.8 * E2 + 0.2 * E3, E3])
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return LabelSource(["a", "b", "c", "d", "e"], vecs, {"colour": np.array([0, 0, 1, 1, -1])})


def test_nearest_neighbours_vote_for_their_label() -> None:
    votes = neighbour_votes(np.stack([E1, E2]), ["q1", "q2"], _source(), "colour", 3, k=2)
    assert votes.shape == (2, 3) and np.allclose(votes.sum(1), 1.0)
    assert votes[0].argmax() == 0 and votes[0, 0] > 0.99 and votes[1].argmax() == 1 and votes[1, 1] > 0.99
    assert votes[:, 2].max() < 1e-6  # nobody carries label 2; "e" has no label and never votes


def test_an_item_never_votes_for_itself() -> None:
    src = LabelSource(["a", "b"], np.stack([E1, E2]), {"colour": np.array([0, 1])})
    votes = neighbour_votes(np.stack([E1]), ["a"], src, "colour", 2, k=2)
    assert votes[0].argmax() == 1 and votes[0, 1] == pytest.approx(1.0)  # its own label 0 would be the nearest


def test_no_neighbour_or_no_image_gives_uniform_shares() -> None:
    empty = LabelSource(["a"], np.stack([E1]), {"colour": np.array([-1])})
    assert np.allclose(neighbour_votes(np.stack([E1]), ["q"], empty, "colour", 4, k=5), 0.25)
    assert np.allclose(neighbour_votes(np.zeros((1, 3), np.float32), ["q"], _source(), "colour", 2, k=2), 0.5)
    zs = np.array([[0.7, 0.3]])
    assert np.allclose(mix(zs, np.array([[0.0, 1.0]]), 0.5), [[0.35, 0.65]])


def test_field_values_match_labels_loosely_and_excluded_items_never_vote() -> None:
    items = [ItemRecord("x", category="Leggings/Tights", attributes={"colour": "Dark Blue"}, media=(("image", "u"),)),
             ItemRecord("y", category="T-shirt", media=(("image", "v"),)),
             ItemRecord("z", category="Dress"),  # no image: cannot vote
             ItemRecord("w", attributes={"colour": "Red"}, media=(("image", "w"),))]
    assert field_value(items[0], "attributes.colour") == "dark blue" and field_value(items[0], "title") == ""
    assert label_indices(items, "category", ["dress", "t-shirt", "leggings/tights"]).tolist() == [2, 1, 0, -1]
    assert [it.item_id for it in candidate_items(items, {"category"})] == ["x", "y"]
    assert [it.item_id for it in candidate_items(items, {"category", "attributes.colour"}, {"x"})] == ["y", "w"]


def test_vocabularies_declare_fields(tmp_path: Path) -> None:
    hm = load_vocabulary("hm")
    fields = {f.name: f.field for f in hm.facets}
    assert fields["colour"] == "attributes.colour" and fields["garment"] == "category" and fields["pattern"] is None
    assert hm.neighbours == 30 and hm.neighbour_weight == 0.5
    assert load_vocabulary("generic").neighbours == 30  # the default; its facets name no field, so it is unused
    bad = tmp_path / "bad.toml"
    for text in ('[facets.colour]\nlabels = ["red", "blue"]\nfield = "price"\n',
                 'neighbours = -1\n[facets.colour]\nlabels = ["red", "blue"]\n',
                 'neighbour_weight = 2\n[facets.colour]\nlabels = ["red", "blue"]\n'):
        bad.write_text(text)
        with pytest.raises(ValidationFailed):
            load_vocabulary(bad)
