"""A shop without photos builds: `recsys build` used to stop at the encoder fit ("import a catalogue with images"),
and every other command then said to run `recsys build`. It now goes on with the unfitted heads, says so, and search
and similar items work from the towers' own text features; `recsys encoder fit` itself still refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli

ITEMS = [("shirt-1", "red cotton shirt", "shirts"), ("shirt-2", "blue linen shirt", "shirts"),
         ("chino-1", "beige chino trousers", "trousers"), ("chino-2", "navy chino trousers", "trousers"),
         ("boot-1", "brown leather boots", "shoes"), ("boot-2", "black leather boots", "shoes")]


def test_a_text_only_catalogue_builds_and_answers(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"item_id": i, "title": t, "category": c}) + "\n" for i, t, c in ITEMS))
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps({"user_id": f"u{u}", "item_id": ITEMS[(u + j) % 6][0], "type": "purchase",
                                          "timestamp": f"2026-11-0{1 + j}T10:00:00Z"}) + "\n"
                              for u in range(4) for j in range(3)))
    assert run_cli(monkeypatch, capsys, "import", "items", str(items))[0] == 0
    assert run_cli(monkeypatch, capsys, "import", "events", str(events))[0] == 0
    code, _, err = run_cli(monkeypatch, capsys, "build")
    assert code == 0, err[-2000:]
    assert "encoder_fit: skipped, the heads stay unfitted: 6 item(s) have text but none has a decodable image" in err
    code, out, _ = run_cli(monkeypatch, capsys, "search", "text", "chino trousers", "--k", "2", "--json")
    assert code == 0 and {r["item_id"] for r in json.loads(out.splitlines()[-1])} == {"chino-1", "chino-2"}
    code, out, _ = run_cli(monkeypatch, capsys, "recommend", "u0", "--k", "3", "--json")
    assert code == 0 and len(json.loads(out.splitlines()[-1])) == 3
    code, _, err = run_cli(monkeypatch, capsys, "encoder", "fit")
    assert code == 2 and "none has a decodable image" in err


def test_pictures_that_cannot_be_read_still_stop_the_build(home: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Named but unreadable pictures are a mistake to fix, not a shop without photos: no unfitted build."""
    rows = []
    for i, t, c in ITEMS:
        (tmp_path / f"{i}.jpg").write_bytes(b"not a picture")
        rows.append({"item_id": i, "title": t, "category": c, "image": str(tmp_path / f"{i}.jpg")})
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run_cli(monkeypatch, capsys, "import", "items", str(items))[0] == 0
    code, _, err = run_cli(monkeypatch, capsys, "build")
    assert code == 2 and "failed to decode" in err and "skipped, the heads stay unfitted" not in err
