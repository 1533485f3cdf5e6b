"""The embedding cache and the index build never take a damaged vector for a good one."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
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


def _open_caches_in_step(folder: Path, rounds: int, barrier: object, failures: object) -> None:
    for r in range(rounds):
        barrier.wait()  # type: ignore[attr-defined]
        try:
            VectorCache(folder / f"c{r}.db")
        except Exception as e:  # counted and reported by the test
            failures.put(str(e))  # type: ignore[attr-defined]


def test_workers_opening_a_new_cache_together_all_open_it(tmp_path: Path) -> None:
    # Ray workers of one embed open the same new cache together; about one round in 50 one of them got "database is
    # locked" from the switch to WAL, which SQLite does not wait for, and the whole embed failed (a flaky CI run)
    ctx = mp.get_context("fork")
    barrier, failures = ctx.Barrier(4), ctx.Queue()
    workers = [ctx.Process(target=_open_caches_in_step, args=(tmp_path, 300, barrier, failures)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    errors = []
    while not failures.empty():
        errors.append(failures.get())
    assert errors == [] and all(w.exitcode == 0 for w in workers)
    with sqlite3.connect(tmp_path / "c0.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


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
