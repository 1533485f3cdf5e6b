"""The setup cells of notebooks 01/02 (parameters, store, pictures) and the neighbour purity of 01, run in this process
from the notebooks' own sources with the build stubbed: which stores they import into, where they read pictures,
and over which items they count neighbours."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recsys.errors import ConfigError
from tests.e2e_fixture import ROOT
from tests.notebooks.stores import counts, own_store

BOOKS = [ROOT / "notebooks" / "01_catalogue_and_embeddings.ipynb", ROOT / "notebooks" / "02_one_user.ipynb"]


def code_cell(path: Path, marker: str) -> str:
    """The source of the code cell of ``path`` tagged ``parameters`` (marker "parameters") or containing ``marker``."""
    book = json.loads(path.read_text(encoding="utf-8"))
    for cell in book["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and (marker in source or marker in cell["metadata"].get("tags", [])):
            return source
    raise AssertionError(f"{path.name}: no code cell with {marker!r}")


def run_cells(path: Path, *markers: str, ns: dict[str, Any] | None = None) -> dict[str, Any]:
    """Execute the cells named by ``markers`` in order, in one namespace (as the kernel would)."""
    ns = {} if ns is None else ns
    for marker in markers:
        exec(compile(code_cell(path, marker), f"{path.name}[{marker}]", "exec"), ns)
    return ns


SETUP = ("parameters", "rec = Recommender(")
PICTURES = (*SETUP, "def gallery(")


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """The homes `rec.jobs.build()` was called on (stubbed: the store stays unbuilt); figures drawn off screen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    called: list[Path] = []

    def build(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        called.append(self.settings.home)
        return {"seconds": 0, "index": None}

    monkeypatch.setattr("recsys.jobs.Jobs.build", build)
    monkeypatch.delenv("RECSYS_DATABASE_URL", raising=False)
    monkeypatch.setenv("RECSYS_NB_DATA", "demo")
    monkeypatch.setenv("RECSYS_NB_ITEMS", "18")  # a few generated items keep this quick
    monkeypatch.setenv("RECSYS_NB_USERS", "4")
    yield called
    plt.close("all")


def dispose(ns: dict[str, Any]) -> None:
    if "store" in ns:
        ns["store"].dispose()


@pytest.mark.parametrize("path", BOOKS, ids=lambda p: p.stem)
def test_setup_never_adds_the_demo_to_own_data(path: Path, builds: list[Path], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # a store with its owner's items and no build yet got the 18 demo items, 4 users and their events, then a build
    home = own_store(tmp_path / "home")
    monkeypatch.setenv("RECSYS_HOME", str(home))
    before = counts(home)
    ns: dict[str, Any] = {}
    try:
        with pytest.raises(ConfigError, match=r"holds 3 items and 0 events .*`RECSYS_HOME=.* recsys build`"):
            run_cells(path, *SETUP, ns=ns)
    finally:
        dispose(ns)
    assert counts(home) == before
    assert not (home / "demo-data").exists() and builds == []


def test_setup_imports_the_demo_into_an_empty_home_and_builds_its_own_data(
        builds: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("RECSYS_HOME", str(home))
    ns = run_cells(BOOKS[1], *SETUP)
    dispose(ns)
    first = counts(home)
    assert first["items"] == 18 and first["events"] > 0 and builds == [home]
    # the build was cut short (stubbed here): the next run builds the demo's own data, importing nothing again
    ns = run_cells(BOOKS[0], *SETUP)
    dispose(ns)
    assert counts(home) == first and builds == [home, home]
    assert f"building the demo data already imported into {home}" in capsys.readouterr().out


@pytest.mark.parametrize("path", BOOKS, ids=lambda p: p.stem)
def test_pictures_of_a_moved_home(path: Path, builds: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    # every thumbnail of a copied or moved data directory was the grey placeholder, and nothing said so
    old, home = tmp_path / "old-home", tmp_path / "home"
    monkeypatch.setenv("RECSYS_HOME", str(old))
    dispose(run_cells(path, *SETUP))  # the notebook's own demo, its image paths recorded under old-home
    shutil.move(old, home)
    monkeypatch.setenv("RECSYS_HOME", str(home))
    ns = run_cells(path, *PICTURES)
    try:
        items = ns["items"]
        shown = list(items.index[:6])
        assert all(str(items.at[i, "image"]).startswith(str(old)) for i in shown)
        grey = set(ns["GREY"].getdata()) if "GREY" in ns else {(220, 220, 220)}
        thumbs = [ns["load_image"](i) for i in shown]
        assert all(t is not None and set(t.getdata()) != grey for t in thumbs)
        capsys.readouterr()
        ns["gallery"](shown, title="moved")
        assert "could not be shown" not in capsys.readouterr().out
        (home / "demo-data" / Path(items.at[shown[2], "image"]).relative_to(old / "demo-data")).unlink()
        ns["gallery"](shown, title="one picture gone")
        out = capsys.readouterr().out
        assert "1 of 6 pictures could not be shown" in out and "file not found" in out
    finally:
        dispose(ns)


def test_neighbour_purity_counts_only_items_with_the_vector(capsys: pytest.CaptureFixture[str]) -> None:
    # items without an image vector got items 0..9 as neighbours, and counted: 0.74 for 3 perfectly separate groups
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    n = 600
    cats = np.repeat(np.array(["a", "b", "c"]), n // 3)
    ids = [f"item-{i}" for i in range(n)]
    centres = np.eye(3, 16)[np.searchsorted(["a", "b", "c"], cats)]
    vecs = {}
    for m, share in (("text", 1.0), ("image", 0.6)):
        v = centres + 0.01 * rng.standard_normal((n, 16))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        found = rng.random(n) < share
        v[~found] = 0  # what IndexReader.vectors_of gives for an item without the modality
        vecs[m] = (v.astype(np.float32), found)
    items = pd.DataFrame({"category": cats, "title": ids}, index=pd.Index(ids, name="item_id"))
    ns: dict[str, Any] = {"np": np, "pd": pd, "plt": plt, "items": items, "ids": ids, "vecs": vecs, "rng": rng}
    try:
        run_cells(BOOKS[0], "def neighbours(", ns=ns)
    finally:
        plt.close("all")
    assert ns["purity"] == {"text": 1.0, "image": 1.0}
    with_image = int(vecs["image"][1].sum())
    assert f"image 1.00 over the {with_image:,} items with image vectors" in capsys.readouterr().out


def test_run_all_refuses_own_data_without_an_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # `make notebooks` took "recsys.db exists" for "built", and the notebooks then added the demo to the owner's data
    import notebooks.run_all as run_all

    ran: list[str] = []
    monkeypatch.setattr("nbclient.NotebookClient.execute", lambda self: ran.append("x"))
    monkeypatch.setattr(run_all, "HERE", tmp_path)  # no notebooks there: the checks only, nothing executed
    monkeypatch.delenv("RECSYS_DATABASE_URL", raising=False)
    home = own_store(tmp_path / "home")
    monkeypatch.setenv("RECSYS_HOME", str(home))
    for data in ("demo", str(tmp_path / "hm")):
        monkeypatch.setenv("RECSYS_NB_DATA", data)
        assert run_all.main([]) == 2
        err = capsys.readouterr().err
        assert "holds 3 items and 0 events but no index" in err and f"`RECSYS_HOME={home} recsys build`" in err
    (home / "demo-data").mkdir()
    (home / "demo-data" / "items.jsonl").write_text("")  # the demo's own data, not built yet: the notebooks build it
    monkeypatch.setenv("RECSYS_NB_DATA", "demo")
    assert run_all.main([]) == 0
    # an empty store is no built one (the notebooks would import their small demo into it)
    empty = tmp_path / "empty"
    counts(empty)  # opens it: an empty database
    monkeypatch.setenv("RECSYS_HOME", str(empty))
    assert run_all.main([]) == 2 and "no recsys data at" in capsys.readouterr().err
    assert counts(home)["items"] == 3 and ran == []


@pytest.mark.parametrize(("prices", "said"), [([None, None], "price: none given; in stock 50%"),
                                              ([2.0, None], "price: median 2.00 (1 of 2 items priced)")])
def test_the_catalogue_cell_says_when_no_item_has_a_price(prices: list[float | None], said: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    # on MovieLens (no prices) 01 printed "price: median nan"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = pd.DataFrame({"category": ["a", None], "price": pd.Series(prices, dtype=float),
                          "in_stock": [True, False]})
    try:
        run_cells(BOOKS[0], "items per category (top 20)", ns={"items": items, "plt": plt})
    finally:
        plt.close("all")
    assert said in capsys.readouterr().out
