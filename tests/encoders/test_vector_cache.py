"""The embedding cache and the index build never take a damaged vector for a good one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys.encoders.cache import VectorCache, media_identity
from recsys.encoders.tagging import read_vocabulary
from recsys.errors import ValidationFailed
from recsys.index.catalog import _nonzero


def test_a_non_finite_cached_vector_is_a_miss_encoded_again(tmp_path: Path) -> None:
    cache = VectorCache(tmp_path / "v.db")
    good, bad = np.ones(4, np.float32), np.array([1, np.nan, 0, 0], np.float32)
    cache.put_many({"good": good, "bad": bad, "inf": np.full(4, np.inf, np.float32)})
    got = cache.get_many(["good", "bad", "inf"])
    assert list(got) == ["good"] and np.array_equal(got["good"], good)


def test_a_nan_row_counts_as_present_so_the_build_names_it() -> None:
    rows = np.array([[np.nan, 1.0], [0.0, 0.0], [0.5, 0.0]], np.float32)
    assert _nonzero(rows).tolist() == [True, False, True]  # NaN: present, then refused by the finite check


def test_a_damaged_cache_file_is_set_aside_and_started_anew(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # it stopped embed, fit, describe and build with a bare sqlite3.DatabaseError
    path = tmp_path / "v.db"
    path.write_bytes(b"garbage, not a database" * 100)
    cache = VectorCache(path)
    cache.put_many({"a": np.ones(4, np.float32)})
    assert list(cache.get_many(["a"])) == ["a"]
    aside = [p.name for p in tmp_path.iterdir() if ".damaged-" in p.name]
    assert len(aside) == 1 and "is damaged" in caplog.text and aside[0] in caplog.text


def test_a_file_url_has_its_files_identity(tmp_path: Path) -> None:
    # "file:///...|missing" for ever: a new picture behind the URL was never encoded
    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"one picture")
    first = media_identity(f"file://{photo}")
    photo.write_bytes(b"another, longer picture")
    assert first != media_identity(f"file://{photo}") and not first.endswith("|missing")
    assert media_identity(f"file://{photo}").split("|")[1:] == media_identity(str(photo)).split("|")[1:]


def test_a_vocabulary_with_a_byte_order_mark_or_not_utf8(tmp_path: Path) -> None:
    f = tmp_path / "v.json"
    f.write_bytes(b'\xef\xbb\xbf{"colour": ["red", "blue"]}')  # as Notepad saves it: read as "facet: labels" lines
    assert read_vocabulary(f) == {"colour": ["red", "blue"]}
    f.write_bytes("colour: rouge, bleu, \xe9carlate".encode("latin-1"))
    with pytest.raises(ValidationFailed, match="is not UTF-8 text .*save it as UTF-8"):
        read_vocabulary(f)
