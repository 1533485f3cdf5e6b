"""The notebook audit's defects: `make notebooks` on a failing, dying or hanging notebook (and on a store without a
ranker), 02 on a user without a history and beside hidden items, its "because" gallery, and the ranker 03's
diversity sweep fits. The cells of 02 and 03 run in this process from the notebooks' own sources, over a small store
and a stand-in for the built recommender; the run on the demo is slow."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

import notebooks.run_all as run_all
from recsys.store import Store
from recsys.store.queries import events_frame, items_frame
from tests.e2e_fixture import ROOT, private_home
from tests.notebooks.stores import as_if_built, own_store, shop_store
from tests.notebooks.test_setup_cells import run_cells

ONE_USER, EVALUATION = ROOT / "notebooks" / "02_one_user.ipynb", ROOT / "notebooks" / "03_evaluation.ipynb"


@pytest.fixture
def notebooks_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """run_all over the notebooks a test writes to the directory returned, on a store that passes its checks."""
    own_store(tmp_path / "home")
    as_if_built(monkeypatch)
    (tmp_path / "nb").mkdir()
    monkeypatch.setattr(run_all, "HERE", tmp_path / "nb")
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RECSYS_DATABASE_URL", raising=False)
    monkeypatch.delenv("RECSYS_NB_DATA", raising=False)
    return tmp_path / "nb"


def write_notebook(where: Path, name: str, *sources: str) -> None:
    nbformat = pytest.importorskip("nbformat")
    book = nbformat.v4.new_notebook()
    book.cells = [nbformat.v4.new_markdown_cell(f"# {name}"), *(nbformat.v4.new_code_cell(s) for s in sources)]
    nbformat.write(book, where / name)


def test_a_failing_notebook_and_a_dead_kernel_are_named_and_the_next_one_runs(
        notebooks_dir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # a dead kernel ended `make notebooks` with a traceback, the notebooks after it never run; a cell's error was
    # "FAILED: \x1b[31mIndexError\x1b[39m: ...", with no cell named
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    if os.name == "nt":
        pytest.skip("no IPC transport (nor SIGKILL) on Windows")
    write_notebook(notebooks_dir, "01_fails.ipynb", "x = 1", "import numpy as np\nnp.arange(0)[0]")
    write_notebook(notebooks_dir, "02_dies.ipynb", f"import os\nos.kill(os.getpid(), {int(signal.SIGKILL)})",
                   "print('not reached')")
    write_notebook(notebooks_dir, "03_after.ipynb", "print('ran after them')")
    assert run_all.main([]) == 1
    out, err = capfd.readouterr()
    assert "\x1b" not in err
    failed = [line for line in err.splitlines() if "FAILED" in line]
    assert failed == [
        "01_fails.ipynb: FAILED at cell 2/2 (In [2]: import numpy as np): IndexError: index 0 is out of bounds for "
        "axis 0 with size 0",
        "02_dies.ipynb: FAILED at cell 1/2 (In [1]: import os): the kernel died (out of memory? a crash in native "
        "code?)"], err
    assert "03_after.ipynb: ok" in out and "Traceback" not in err
    assert "2 of 3 notebooks failed: 01_fails.ipynb, 02_dies.ipynb" in err
    assert sorted(p.name for p in (notebooks_dir / "executed").iterdir()) == [
        "01_fails.ipynb", "02_dies.ipynb", "03_after.ipynb"]


def test_a_cell_past_the_timeout_is_named_and_the_next_notebook_runs(
        notebooks_dir: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    from nbclient.exceptions import CellTimeoutError

    def execute(self: Any) -> None:  # nbclient's own error for a cell past its timeout, without waiting for one
        for n, cell in enumerate(self.nb.cells):
            if cell.cell_type == "code":
                self.on_cell_execute(cell=cell, cell_index=n)
                if "sleep" in cell.source:
                    raise CellTimeoutError.error_from_timeout_and_cell("Cell execution timed out", 1800, cell)

    monkeypatch.setattr("nbclient.NotebookClient.execute", execute)
    write_notebook(notebooks_dir, "01_slow.ipynb", "import time", "time.sleep(3600)  # a cell that hangs")
    write_notebook(notebooks_dir, "02_after.ipynb", "print('ran')")
    assert run_all.main([]) == 1
    out, err = capfd.readouterr()
    assert "01_slow.ipynb: FAILED at cell 2/2 (In [2]: time.sleep(3600)  # a cell that hangs): the cell ran past " \
           f"{run_all.CELL_TIMEOUT_S} s" in err
    assert "02_after.ipynb: ok" in out


@pytest.mark.parametrize("ranker_error", [None, "the ranker files are damaged"])
def test_run_all_refuses_a_store_with_an_index_but_no_ranker(
        ranker_error: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # the pre-check passed it; 02 then stopped at its first list ("no ranker has been trained yet") after 01 ran
    started: list[list[str]] = []
    monkeypatch.setattr(run_all.os, "execv", lambda path, args: started.append(args))
    monkeypatch.setattr("nbclient.NotebookClient.execute", lambda self: pytest.fail("a notebook was started"))
    monkeypatch.setattr(run_all, "HERE", tmp_path)
    home = own_store(tmp_path / "home")
    monkeypatch.setenv("RECSYS_HOME", str(home))
    monkeypatch.delenv("RECSYS_DATABASE_URL", raising=False)
    monkeypatch.delenv("RECSYS_NB_DATA", raising=False)
    status = {"ready": True, "not_served": ["recommendations", "trending"], "ranker_error": ranker_error}
    monkeypatch.setattr("recsys.service.Recommender.status", lambda self: status)
    assert run_all.main([]) == 2
    err = capsys.readouterr().err
    assert f"{home} has an index but no ranker to recommend with: {ranker_error or 'none has been trained'}" in err
    assert f"`RECSYS_HOME={home} recsys build`" in err
    assert run_all.main(["--lab"]) == 0 and len(started) == 1  # JupyterLab opens them all the same (01 works)
    status["not_served"] = []
    assert run_all.main([]) == 0


# -- 02_one_user, over a small store and a stand-in for the built recommender ---------------------------------------


@dataclass
class Result:
    item_id: str
    explanation: dict[str, Any] | None = None
    score: float = 0.5
    sources: list[str] = field(default_factory=lambda: ["trending"])


class Served:
    """What 02 asks of ``rec``: fixed lists, and the live path's events kept in memory."""

    def __init__(self, store: Store, lists: dict[str, list[Result]], trending: list[str]) -> None:
        self.store, self.lists = store, lists
        self.stored: list[dict[str, Any]] = []
        self.trending = [Result(i, {"reason": "popular", "because_of": None}) for i in trending]
        with store.session() as s:
            frame = items_frame(s, include_removed=True)
        self.index = SimpleNamespace(item_ids=list(frame["item_id"]))
        self.removed = frozenset(frame.loc[frame["hidden"] | frame["deleted"], "item_id"])
        self.catalogue = SimpleNamespace(ingest_events=self.ingest)

    def removed_items(self) -> frozenset[str]:
        return self.removed

    def recommend(self, user: str, k: int = 20, **_: Any) -> list[Result]:
        disliked = {e["item_id"] for e in self.stored if e["user_id"] == user and e["type"] == "dislike"}
        return self.lists.get(user, [r for r in self.trending if r.item_id not in disliked])[:k]

    def recommend_for_events(self, events: list[dict[str, Any]], k: int = 20, **_: Any) -> list[Result]:
        return self.trending[:k]

    def ingest(self, records: list[dict[str, Any]]) -> list[Any]:
        self.stored.extend(records)
        return [SimpleNamespace(status="stored") for _ in records]


DAY = "2026-01-0{}T10:00:00Z"
SHOP_ITEMS = ([{"item_id": f"shoe-{i}", "title": f"shoe {i}", "category": "shoes"} for i in range(4)]
              + [{"item_id": f"hat-{i}", "title": f"hat {i}", "category": "hats"} for i in range(6)]
              + [{"item_id": f"bag-{i}", "title": f"bag {i}", "category": "bags"} for i in range(2)])
HISTORY = [("view", "shoe-0"), ("purchase", "shoe-1"), ("view", "shoe-2")]


@pytest.fixture
def one_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The namespace the cells of 02 after its setup find: user-0001 bought and viewed shoes, user-0009 is stored
    without events, and the first three hats (the most numerous category the user has not touched) are hidden."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    events = [{"user_id": "user-0001", "item_id": i, "type": t, "timestamp": DAY.format(n + 1)}
              for n, (t, i) in enumerate(HISTORY)]
    events.append({"user_id": "user-0002", "item_id": "shoe-3", "type": "view", "timestamp": DAY.format(5)})
    store = shop_store(tmp_path / "home", SHOP_ITEMS, events, users=["user-0001", "user-0002", "user-0009"],
                       hidden=["hat-0", "hat-1", "hat-2"])
    with store.session() as s:
        items, stored = items_frame(s).set_index("item_id"), events_frame(s)
    shown: list[tuple[list[str], list[str] | None, str | None]] = []

    def gallery(item_ids: Any, captions: Any = None, title: str | None = None, **_: Any) -> None:
        shown.append((list(item_ids), None if captions is None else list(captions), title))

    trending = ["bag-0", "hat-4", "shoe-3", "hat-5"]
    ns: dict[str, Any] = {"np": np, "pd": pd, "plt": plt, "K": 4, "store": store, "items": items, "events": stored,
                          "events_frame": events_frame, "gallery": gallery, "shown": shown,
                          "rec": Served(store, {}, trending)}
    try:
        yield ns
    finally:
        plt.close("all")
        store.dispose()


AFTER_SETUP = ("user = USER or", "recs = rec.recommend(user", 'title=f"recommended for {user}"', "fresh_cats = [",
               'visitor = f"notebook-visitor', "for d in (0.0")


@pytest.mark.parametrize(("user", "said"), [
    ("user-001", "user-001 is not in the store: a new shopper (did you mean user-0001?)"),
    ("qqqqqqqq", "qqqqqqqq is not in the store: a new shopper. Below"),
    ("user-0009", "user-0009 is in the store but has no history events")], ids=["misspelt", "unknown", "no-events"])
def test_a_user_without_history_gets_the_cold_start_list(user: str, said: str, one_user: dict[str, Any],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    # an id not in the store (the README's own misspelt example) stopped 02 with an IndexError of a bar plot
    run_cells(ONE_USER, *AFTER_SETUP, ns={**one_user, "USER": user})
    out = capsys.readouterr().out
    assert said in out and "the cold-start (trending) list" in out
    titles = [title for _, _, title in one_user["shown"]]
    assert f"{user}: latest items (newest first)" not in titles and "feedback" not in titles  # no history to show
    assert (["bag-0", "hat-4", "shoe-3", "hat-5"], ["trending"] * 4, f"recommended for {user}") in one_user["shown"]
    assert "no history to add likes to" in out


def test_likes_are_only_of_items_a_shopper_could_like(one_user: dict[str, Any]) -> None:
    # the first items of the fresh category were liked (and, for the visitor, stored) although hidden
    ns = run_cells(ONE_USER, *AFTER_SETUP, ns={**one_user, "USER": "user-0001"})
    assert len(ns["likes"]) == 2 and not set(ns["likes"]) & {"hat-0", "hat-1", "hat-2"}, ns["likes"]
    assert ns["items"]["category"].reindex(ns["likes"]).tolist() == ["hats", "hats"]
    liked = [e["item_id"] for e in one_user["rec"].stored if e["type"] == "like"]
    assert liked == ns["likes"]
    assert (ns["likes"] + [ns["dislike"]], ["like", "like", "dislike"], "feedback") in one_user["shown"]


def test_the_because_gallery_pairs_look_alikes_captioned_by_what_the_user_did(one_user: dict[str, Any]) -> None:
    # a bought item was shown next to itself, and every history item was captioned "because you liked"
    explained = [
        Result("shoe-1", {"reason": "repeat", "because_of": "shoe-1", "similarity": 1.0,
                          "because_event": {"type": "purchase", "date": "2026-01-02"}}, sources=["repurchase"]),
        Result("shoe-3", {"reason": "similar", "because_of": "shoe-0", "similarity": 0.8, "text_share": 0.6,
                          "image_share": 0.4, "because_event": {"type": "view", "date": "2026-01-01"}}),
        Result("bag-0", {"reason": "similar", "because_of": "shoe-2", "similarity": 0.05,  # no look-alike
                         "because_event": {"type": "view", "date": "2026-01-03"}}),
        Result("hat-4", {"reason": "popular", "because_of": None})]
    one_user["rec"].lists["user-0001"] = explained
    run_cells(ONE_USER, *AFTER_SETUP[:3], ns={**one_user, "USER": "user-0001"})
    pairs = [(ids, captions) for ids, captions, title in one_user["shown"] if str(title).startswith("recommendation")]
    assert pairs == [(["shoe-3", "shoe-0"], ["like an item you viewed", "view 2026-01-01"])]


# -- 03_evaluation's diversity sweep -----------------------------------------------------------------------------


class Pipeline:
    """Stands in for RankingPipeline: what it was fitted on, and how it was asked."""

    fitted: list[dict[str, Any]] = []
    asked: list[dict[str, Any]] = []

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids

    def recommend_many(self, hists: list[Any], k: int, **kw: Any) -> list[list[Any]]:
        Pipeline.asked.append(kw)
        return [[SimpleNamespace(item_id=i) for i in self.ids[:k]] for _ in hists]


def test_the_diversity_sweep_fits_the_ranker_recsys_evaluate_fits(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # the sweep ranked over vectors of its own (no tower text vectors), trained on replayed withheld shoppers and
    # recommended hidden items: another model than the "ours" it is compared with
    from recsys.config import Settings
    from recsys.ranking import SimpleVectors
    from recsys.store.queries import mark_evaluation_users

    ids = [f"i-{n:02d}" for n in range(20)]
    rng = np.random.default_rng(0)
    events = [{"user_id": f"u-{u:02d}", "item_id": ids[(u + d) % 19], "type": "purchase" if d else "view",
               "timestamp": DAY.format(d + 1)} for u in range(40) for d in range(3)]
    store = shop_store(tmp_path / "home", [{"item_id": i, "title": i, "category": "c"} for i in ids], events,
                       hidden=["i-19"])
    mark_evaluation_users(store, {"u-05"}, "withheld.csv")
    fused, tower = rng.standard_normal((20, 16)), rng.standard_normal((20, 24))
    served = SimpleVectors(ids, fused, None, None, "enc@1", tower)
    reader = SimpleNamespace(item_ids=ids, modalities=("fused",), manifest=SimpleNamespace(encoder_id="enc@1"),
                             vectors_of=lambda which, modality: (fused, np.ones(len(which), bool)))
    monkeypatch.setattr("recsys.serving.generations.vectors_of_index", lambda settings, r: served)
    monkeypatch.setattr(Pipeline, "fitted", [])
    monkeypatch.setattr(Pipeline, "asked", [])

    def fit(train: pd.DataFrame, catalogue: pd.DataFrame, vectors: Any, settings: Any, **kw: Any) -> Pipeline:
        Pipeline.fitted.append({"train": train, "vectors": vectors, **kw})
        return Pipeline(ids)

    monkeypatch.setattr("recsys.ranking.RankingPipeline.fit", fit)
    rec = SimpleNamespace(index=reader, removed_items=lambda: frozenset({"i-19"}))
    with store.session() as s:
        stored = events_frame(s)
    ns = {"np": np, "pd": pd, "K": 5, "DIVERSITIES": [0.0, 0.5], "settings": Settings(home=tmp_path / "home"),
          "store": store, "rec": rec, "events": stored, "items_frame": items_frame}
    try:
        run_cells(EVALUATION, "def ours_at(", ns=ns)
    finally:
        store.dispose()
    assert len(Pipeline.fitted) == 1 and Pipeline.fitted[0]["vectors"] is served  # `recsys evaluate`'s own
    assert "u-05" not in set(Pipeline.fitted[0]["train"]["user_id"])
    assert len(Pipeline.asked) == 2 and all(kw["exclude"] == {"i-19"} for kw in Pipeline.asked)
    assert all(kw["now"] and all(t is not None for t in kw["now"]) for kw in Pipeline.asked)
    assert list(ns["tradeoff"].index) == [0.0, 0.5]


# -- 02_one_user on the demo --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_one_user_on_the_demo_for_a_misspelt_id_with_hidden_items(demo_home: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from recsys.config import Settings
    from recsys.store.items import set_flags

    home = private_home(demo_home, tmp_path / "home")
    settings = Settings(home=home, database_url=None)
    store = Store.open(settings)
    try:
        with store.session() as s:
            items = items_frame(s)
            hide = [i for _, group in items.groupby("category") for i in group["item_id"].iloc[:-2]]
            set_flags(s, hide, hidden=True)  # all but the last two items of each category
    finally:
        store.dispose()
    monkeypatch.setenv("RECSYS_HOME", str(home))
    monkeypatch.setenv("RECSYS_NB_USER", "user-001")
    monkeypatch.delenv("RECSYS_DATABASE_URL", raising=False)
    book = nbformat.read(ONE_USER, as_version=4)
    nbclient.NotebookClient(book, timeout=1200, kernel_name="python3",
                            resources={"metadata": {"path": str(ONE_USER.parent)}}).execute()
    text = "".join(o.get("text", "") for c in book.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "user-001 is not in the store: a new shopper (did you mean user-0001, user-0010 or user-0011?)" in text
    store = Store.open(settings)
    try:
        with store.session() as s:
            liked = events_frame(s, users=[u for u in events_frame(s)["user_id"].unique()
                                           if u.startswith("notebook-visitor-")])
    finally:
        store.dispose()
    likes = set(liked.loc[liked["type"] == "like", "item_id"])
    assert len(likes) == 2 and not likes & set(hide)


def test_run_all_help_prints_its_usage_and_runs_nothing(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    # `run_all.py --help` ran every notebook (and 02 wrote likes into the store)
    monkeypatch.setattr(run_all, "notebook_env", lambda **_: pytest.fail("the store was opened"))
    for args, code in ((["--help"], 0), (["--labs"], 2)):
        with pytest.raises(SystemExit) as e:
            run_all.main(args)
        assert e.value.code == code
    out = capsys.readouterr()
    assert "make notebooks" in out.out and "--lab" in out.out and "unrecognized arguments: --labs" in out.err
