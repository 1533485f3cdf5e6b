"""What a benchmark answers when it measured nothing, or was given an unusable input (bench/quality.py, run_all.py,
summary.py, and the small CLI fixes): an error with a non-zero exit, a ``.failed.json``, never an "ok" or a table
row made of run_all's own stamp; a vectors home named by hand is used as given or refused, never swapped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from tests.bench.test_bench_homes import built
from tests.bench.test_bench_protocol import BENCH, HOST, _fake_bench, _load


def _quality_main(q: ModuleType, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    with pytest.raises(SystemExit) as e:
        q.main(list(argv))
    return int(e.value.code or 0), json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_quality_without_the_data_asked_for_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    q = _load("quality")
    out = tmp_path / "out"
    code, answer = _quality_main(q, capsys, "--datasets", "ml100k", "--data-root", str(tmp_path / "data"),
                                 "--out", str(out))
    assert code == 1 and "--datasets ml100k: not found under --data-root" in answer["error"]
    code, answer = _quality_main(q, capsys, "--data-root", str(tmp_path / "data"), "--out", str(out))
    assert code == 1 and "none of hm, ml100k is there" in answer["error"]  # the default list: none present
    assert not out.exists()  # nothing merged or written


def test_an_explicit_vectors_home_that_is_not_built_is_refused(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    q = _load("quality")
    (tmp_path / "data" / "ml100k").mkdir(parents=True)
    vec = tmp_path / "hm_store"
    vec.mkdir()
    code, answer = _quality_main(q, capsys, "--datasets", "ml100k", "--data-root", str(tmp_path / "data"),
                                 "--vectors-home", f"ml100k={vec}", "--out", str(tmp_path / "out"))
    assert code == 1 and answer["error"].startswith(f"--vectors-home ml100k={vec}: not a built recsys store")
    assert not any(vec.iterdir())


def test_vectors_from_a_named_home_are_read_without_writing_there_and_never_swapped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from recsys import encoders

    q = _load("quality")
    seen: list[Any] = []

    def unusable(settings: Any) -> Any:
        seen.append(settings)
        raise RuntimeError("no item vectors for encoder recsys-lite yet")

    monkeypatch.setattr(encoders, "load_item_vectors", unusable)
    monkeypatch.setattr(q, "minilm_text_vectors", lambda *a: pytest.fail("fell back to MiniLM"))
    items = pd.DataFrame({"item_id": ["x"]})
    home = built(tmp_path / "other_store")
    with pytest.raises(q.InputError, match=r"--vectors-home .*other_store: its item vectors are unusable here"):
        q.load_vectors(SimpleNamespace(), None, items, tmp_path, vectors_home=home)
    assert seen[0].home == home and seen[0].encoder.runtime == "torch"  # no ONNX export written into the home


def test_run_all_fails_an_empty_answer_and_stamps_nothing(tmp_path: Path) -> None:
    run_all = _load("run_all")
    status = run_all.run(_fake_bench(run_all, tmp_path, {}), tmp_path, HOST)
    assert status.startswith("error: empty answer")
    assert json.loads((tmp_path / "quality.failed.json").read_text())["error"].startswith("empty answer")
    assert not (tmp_path / "quality.json").exists()
    assert run_all._failure({}) and run_all._stamp({}, "2026-12-07T00:00:00Z", HOST, 1.0) == {}


def test_summary_never_makes_a_row_of_the_stamp(tmp_path: Path) -> None:
    summary = _load("summary")
    ok = {"k": 20, "generated_at": "2026-12-07T00:00:00Z", "metrics": {"recall": 0.1, "ndcg": 0.05}}
    (tmp_path / "quality.json").write_text(json.dumps({"ml100k": ok, "measured_at": "2026-12-07T00:00:00Z",
                                                       "measured_on": HOST, "wall_s": 12.7}))
    assert [r.benchmark for r in summary.rows_for(tmp_path / "quality.json")] == ["quality ml100k"]


def test_quality_withheld_writes_where_it_is_told_and_a_failure_keeps_what_was_measured(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    q = _load("quality")
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], **kw: Any) -> Any:
        calls.append(cmd)
        return SimpleNamespace(returncode=1, stdout="", stderr="Traceback ...\nwithheld.py: --data-root x: no u.data")

    monkeypatch.setattr(subprocess, "run", fake_run)
    (tmp_path / "data" / "ml100k").mkdir(parents=True)
    result = {"k": 20, "generated_at": "2026-12-07T00:00:00Z", "metrics": {"recall": 0.1, "ndcg": 0.05}}
    monkeypatch.setattr(q, "run_dataset", lambda name, args: result)
    monkeypatch.setattr(q, "markdown_table", lambda *a, **kw: "")
    out, scratch = tmp_path / "out", tmp_path / "scratch"
    code, answer = _quality_main(q, capsys, "--datasets", "ml100k", "--data-root", str(tmp_path / "data"),
                                 "--out", str(out), "--scratch", str(scratch), "--withheld")
    [cmd] = calls
    assert cmd[cmd.index("--out") + 1] == str(out) and cmd[cmd.index("--scratch") + 1] == str(scratch)
    assert code == 1 and answer["error"].endswith("withheld.py: --data-root x: no u.data")
    assert answer["measured"] == ["ml100k"]
    assert json.loads((out / "quality.json").read_text()) == {"ml100k": result}  # measured before the failure


def test_summary_help_points_at_run_all() -> None:
    r = subprocess.run([sys.executable, str(BENCH / "summary.py"), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "run_all.py --summary-only" in r.stdout
    r = subprocess.run([sys.executable, str(BENCH / "summary.py")], capture_output=True, text=True)
    assert r.returncode != 0 and "run_all.py --summary-only" in r.stderr


def test_gbdt_ranker_help_needs_no_lightgbm(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "lightgbm", None)  # import lightgbm -> ImportError
    mod = _load("gbdt_ranker")
    monkeypatch.setattr(sys, "argv", ["gbdt_ranker.py", "--help"])
    with pytest.raises(SystemExit) as e:
        mod.main()
    assert e.value.code == 0 and "usage:" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["gbdt_ranker.py", "events.csv"])
    with pytest.raises(SystemExit, match="needs LightGBM"):
        mod.main()


def test_a_quick_run_imports_into_sqlite_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    run_all = _load("run_all")
    argv = {b.name: b.argv for b in run_all.benches(tmp_path, quick=True)}
    assert "--sqlite-only" in argv["import_speed"]
    assert "--sqlite-only" not in {b.name: b.argv for b in run_all.benches(tmp_path, quick=False)}["import_speed"]
    mod = _load("import_speed")
    (tmp_path / "articles.csv").write_text("")
    (tmp_path / "transactions.csv").write_text("")  # without either, import_speed measures nothing: exit 1
    monkeypatch.setattr(mod, "measure", lambda url, data, home: {"url": url})
    monkeypatch.setattr(mod, "_pg_db", lambda pg: pytest.fail("a PostgreSQL database was created"))
    monkeypatch.setattr(sys, "argv", ["import_speed.py", "--data", str(tmp_path), "--sqlite-only"])
    mod.main()
    out = json.loads(capsys.readouterr().out)
    assert out["sqlite"]["url"].startswith("sqlite:///") and out["postgresql"] == {"skipped": "--sqlite-only"}
