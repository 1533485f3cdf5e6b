"""The benchmark scripts check the folders they are given before they open, start or remove anything (bench/_homes.py).

A home that is not a built store is one line naming the path and what to run, with nothing created there; a copy is
only ever made into a folder this script made before; a previous build is only removed once every input checked out.
Fixture homes are the markers alone (``recsys.db``, ``index/CURRENT`` and its generation's manifest)."""

from __future__ import annotations

import http.server
import importlib
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.bench.test_bench_protocol import _load
from tests.conftest import run_async


def _homes() -> ModuleType:
    """bench/_homes.py as the scripts import it (one module: its InputError is theirs)."""
    _load("run_all")  # puts bench/ on sys.path
    return importlib.import_module("_homes")


def built(home: Path) -> Path:
    """The markers of a home where `recsys build` ran (an empty SQLite file is a valid empty database)."""
    (home / "index" / "generations" / "g1").mkdir(parents=True)
    (home / "index" / "generations" / "g1" / "manifest.json").write_text("{}")
    (home / "index" / "CURRENT").write_text("g1\n")
    (home / "recsys.db").write_bytes(b"")
    return home


@pytest.fixture
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from recsys.config import get_settings

    monkeypatch.delenv("RECSYS_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_a_built_store_is_told_from_a_typo_an_empty_folder_and_a_half_build(tmp_path: Path) -> None:
    homes = _homes()
    assert "does not exist" in homes.unbuilt_reason(tmp_path / "typo")
    assert "recsys.db" in homes.unbuilt_reason(tmp_path)
    (tmp_path / "recsys.db").write_bytes(b"")
    assert "no index generation" in homes.unbuilt_reason(tmp_path)
    assert homes.unbuilt_reason(tmp_path / "recsys.db").endswith("is not a folder")
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "CURRENT").write_text("gone\n")
    assert "'gone', which is not complete" in homes.unbuilt_reason(tmp_path)
    assert homes.unbuilt_reason(built(tmp_path / "b")) is None
    (tmp_path / "b" / "recsys.db").unlink()
    assert homes.unbuilt_reason(tmp_path / "b", "postgresql+psycopg://db/x") is None  # the database is elsewhere
    with pytest.raises(homes.InputError, match=r"--home .*typo: not a built recsys store .*recsys build"):
        homes.require_built(tmp_path / "typo", "--home")


@pytest.mark.parametrize("script", ["reach", "cobuy_space", "diversity", "shopper_lists"])
def test_a_script_on_a_home_that_is_not_built_says_so_and_creates_nothing(
        script: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_settings: None) -> None:
    mod = _load(script)
    typo, empty = tmp_path / "typo", tmp_path / "empty"
    empty.mkdir()
    for home in (typo, empty):
        monkeypatch.setenv("RECSYS_HOME", str(home))
        monkeypatch.setattr(sys, "argv", [f"{script}.py"])
        from recsys.config import get_settings

        get_settings.cache_clear()
        with pytest.raises(SystemExit) as e:
            mod.main()
        assert str(home) in str(e.value) and "recsys build" in str(e.value) and "\n" not in str(e.value)
    assert not typo.exists() and not any(empty.iterdir())  # Store.open never reached: no recsys.db made


def test_shopper_lists_without_shoppers_of_three_purchases_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 fresh_settings: None) -> None:
    mod = _load("shopper_lists")
    monkeypatch.setenv("RECSYS_HOME", str(built(tmp_path / "home")))
    monkeypatch.setattr(sys, "argv", ["shopper_lists.py", "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="no shopper with >= 3 purchases in this store"):
        mod.main()  # was ZeroDivisionError
    assert not (tmp_path / "out").exists()


def test_miss_path_checks_its_home_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _load("miss_path")
    monkeypatch.setattr(sys, "argv", ["miss_path.py", "--home", str(tmp_path / "typo")])
    with pytest.raises(SystemExit, match=r"--home .*typo: not a built recsys store"):
        mod.main()
    assert not (tmp_path / "typo").exists()


# -- describe_hm: --home is replaced by a copy of --copy-from ----------------------------------------------------------

@pytest.fixture
def describe() -> ModuleType:
    return _load("describe_hm")


def _store(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "recsys.db").write_text("the store")
    return d


def test_describe_refuses_a_home_that_holds_or_is_its_source(describe: ModuleType, tmp_path: Path) -> None:
    homes = _homes()
    src = _store(tmp_path / "myhome" / "hm")
    (tmp_path / "myhome" / "notes.txt").write_text("mine")
    for home, source in ((tmp_path / "myhome", src), (src, src), (src / "copy", src)):
        with pytest.raises(homes.InputError, match="overlap"):
            describe.prepare_home(home, source)
    assert (src / "recsys.db").read_text() == "the store" and (tmp_path / "myhome" / "notes.txt").exists()
    assert not (src / "copy").exists()


def test_describe_replaces_only_a_copy_it_made(describe: ModuleType, tmp_path: Path) -> None:
    homes = _homes()
    src = _store(tmp_path / "hm")
    other = tmp_path / "other"
    other.mkdir()
    (other / "thesis.tex").write_text("years of work")
    with pytest.raises(homes.InputError, match="not a copy made by describe_hm.py"):
        describe.prepare_home(other, src)
    assert (other / "thesis.tex").read_text() == "years of work"
    copy = tmp_path / "copy"
    describe.prepare_home(copy, src)
    assert (copy / "recsys.db").read_text() == "the store" and (copy / describe.MARKER).is_file()
    (copy / "described.txt").write_text("a previous run's output")
    describe.prepare_home(copy, src)  # its own copy: replaced
    assert not (copy / "described.txt").exists() and (copy / describe.MARKER).is_file()
    with pytest.raises(homes.InputError, match="--copy-from .*no store database"):
        describe.prepare_home(tmp_path / "c2", tmp_path / "typo")
    with pytest.raises(homes.InputError, match="--home .*no store database"):
        describe.prepare_home(tmp_path / "typo", None)  # without a copy: written in place, never created
    assert not (tmp_path / "c2").exists() and not (tmp_path / "typo").exists()
    assert "ignore_errors" not in Path(describe.__file__).read_text()


def test_describe_exits_with_one_line(describe: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _store(tmp_path / "hm")
    monkeypatch.setattr(sys, "argv", ["describe_hm.py", "--home", str(src), "--copy-from", str(src)])
    with pytest.raises(SystemExit, match=r"^describe_hm.py: --home .* overlap") as e:
        describe.main()
    assert "\n" not in str(e.value) and (src / "recsys.db").exists()


# -- withheld.py: inputs before the previous build is removed ----------------------------------------------------------

def _withheld(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> str:
    mod = _load("withheld")
    monkeypatch.setattr(sys, "argv", ["withheld.py", "--dataset", "ml100k", "--scratch", str(tmp_path / "scratch"),
                                      "--out", str(tmp_path / "out"), *extra])
    monkeypatch.setattr(mod, "recsys", lambda *a: pytest.fail("recsys ran"))
    with pytest.raises(SystemExit) as e:
        mod.main()
    return str(e.value)


def test_withheld_checks_its_inputs_before_removing_the_previous_build(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    previous = built(tmp_path / "scratch" / "withheld_ml100k_validation" / "home")
    msg = _withheld(tmp_path, monkeypatch, "--data-root", str(tmp_path / "typo"))
    assert msg.startswith("withheld.py: --data-root") and "typo" in msg and "\n" not in msg
    (tmp_path / "data" / "ml100k").mkdir(parents=True)
    msg = _withheld(tmp_path, monkeypatch, "--data-root", str(tmp_path / "data"))
    assert "--data-root" in msg and str(tmp_path / "data" / "ml100k" / "u.data") in msg
    (tmp_path / "data" / "ml100k" / "u.data").write_text("1\t1\t5\t881250949\n")
    (tmp_path / "empty").mkdir()
    msg = _withheld(tmp_path, monkeypatch, "--data-root", str(tmp_path / "data"), "--reuse-home",
                    str(tmp_path / "empty"))
    assert "--reuse-home" in msg and "cache/features" in msg
    msg = _withheld(tmp_path, monkeypatch, "--data-root", str(tmp_path / "data"), "--reuse-home",
                    str(tmp_path / "typo"))
    assert "--reuse-home" in msg and "no such folder" in msg
    (previous / "encoders").mkdir()
    msg = _withheld(tmp_path, monkeypatch, "--data-root", str(tmp_path / "data"), "--reuse-home", str(previous))
    assert "--reuse-home" in msg and "inside" in msg  # it would be removed before being copied
    assert (previous / "recsys.db").exists() and (previous / "index" / "CURRENT").exists()


# -- api_load.py: the home checked before a server starts; a server that will not be ready stops the wait ----------

def test_api_load_checks_its_home_before_starting_a_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = _load("api_load")
    monkeypatch.setattr(mod, "start_server", lambda *a: pytest.fail("a server was started"))
    monkeypatch.setattr(sys, "argv", ["api_load.py", "--home", str(tmp_path / "typo")])
    with pytest.raises(SystemExit, match=r"--home .*typo: not a built recsys store"):
        mod.main()
    assert not (tmp_path / "typo").exists()


class _Proc:
    def __init__(self, code: int | None = None) -> None:
        self.returncode = code

    def poll(self) -> int | None:
        return self.returncode


def _unready_server(answers: list[dict[str, Any]]) -> tuple[str, list[int], http.server.HTTPServer]:
    """A /readyz answering 503 with each body in turn (the last one repeated); the requests counted."""
    seen: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(answers[min(len(seen), len(answers) - 1)]).encode()
            seen.append(1)
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", seen, server


def test_api_load_stops_waiting_on_a_reason_that_will_not_clear(tmp_path: Path) -> None:
    mod = _load("api_load")
    reason = "no index generation has been built yet: run `recsys build` (the server picks it up by itself)"
    base, seen, server = _unready_server([{"ready": False, "reason": "the database is unreachable"},
                                          {"ready": False, "reason": reason}])
    log = tmp_path / "server.log"
    try:
        with pytest.raises(SystemExit) as e:
            run_async(mod.wait_ready(base, _Proc(), log, timeout_s=3600))  # the old loop: 3000 polls, ~8 min
    finally:
        server.shutdown()
    assert str(e.value) == f"the server is not ready: {reason}; see its log {log}"
    assert len(seen) == 2  # a starting server's transient reason waited on once, the permanent one stops it


def test_api_load_stops_waiting_on_a_dead_server(tmp_path: Path) -> None:
    mod = _load("api_load")
    with pytest.raises(SystemExit, match=r"the server exited \(1\) before it was ready; see its log .*server.log"):
        run_async(mod.wait_ready("http://127.0.0.1:9", _Proc(1), tmp_path / "server.log", timeout_s=3600))
