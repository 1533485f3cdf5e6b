"""The demo dataset: deterministic, well-formed, and carrying tastes that content can learn."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import recsys.demo as demo
from recsys.demo import EVENT_TYPES, DemoSummary, generate_demo, tiny_demo
from recsys.demo.catalog import CATEGORIES, LOOK_WORDS


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def mid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DemoSummary]:
    """A mid-size demo (enough users for the statistical checks, still a couple of seconds)."""
    out = tmp_path_factory.mktemp("mid") / "demo"
    return out, generate_demo(out, n_items=400, n_users=120, seed=3)


def test_public_api() -> None:
    assert sorted(demo.__all__) == ["DemoSummary", "EVENT_TYPES", "generate_demo", "tiny_demo"]


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    a = generate_demo(tmp_path / "a", n_items=40, n_users=8, seed=7)
    b = generate_demo(tmp_path / "b", n_items=40, n_users=8, seed=7)
    generate_demo(tmp_path / "c", n_items=40, n_users=8, seed=8)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    assert (a.items, a.users, a.events, a.events_by_type) == (b.items, b.users, b.events, b.events_by_type)
    # made again in place: the images are left alone (their times too: the embedding cache keys on them)
    times = {p: p.stat().st_mtime_ns for p in (tmp_path / "a" / "images").iterdir()}
    (tmp_path / "a" / "images" / min(p.name for p in times)).write_bytes(b"damaged")
    generate_demo(tmp_path / "a", n_items=40, n_users=8, seed=7)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    changed = [p for p, t in times.items() if p.stat().st_mtime_ns != t]
    assert [p.name for p in changed] == [min(p.name for p in times)]  # only the damaged one was written


def test_tiny_demo_files_parse_and_counts_match(tmp_path: Path) -> None:
    out = tiny_demo(tmp_path)
    assert out == tmp_path / "demo"
    items, users, events = (_rows(out / f) for f in ("items.jsonl", "users.jsonl", "events.jsonl"))
    assert (len(items), len(users)) == (60, 12)
    assert {it["category"] for it in items} == {c.name for c in CATEGORIES}  # every category shows up
    for it in items:
        assert isinstance(it["item_id"], str) and it["title"] and it["description"]
        assert isinstance(it["price"], float) and it["price"] > 0
        assert isinstance(it["in_stock"], bool)
        assert {"brand", "material", "department"} <= it.keys()
        with Image.open(out / it["image"]) as img:
            img.load()
            assert img.size == (128, 128) and img.mode == "RGB"
    item_ids, user_ids = {it["item_id"] for it in items}, {u["user_id"] for u in users}
    assert len(item_ids) == 60 and len(user_ids) == 12
    assert all({"age_band", "region"} <= u.keys() for u in users)
    seen: set[tuple[str, str]] = set()
    for e in events:
        assert e["item_id"] in item_ids and e["user_id"] in user_ids and e["type"] in EVENT_TYPES
        assert datetime.fromisoformat(e["timestamp"]).utcoffset() is not None and e["timestamp"].endswith("Z")
        assert (e["user_id"], e["event_id"]) not in seen
        seen.add((e["user_id"], e["event_id"]))
        assert ("value" in e) == (e["type"] == "rating")
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)


def test_summary_counts(mid: tuple[Path, DemoSummary]) -> None:
    out, s = mid
    events = _rows(out / "events.jsonl")
    assert (s.out_dir, s.items, s.users, s.images, s.events) == (out, 400, 120, 400, len(events))
    counts = Counter(e["type"] for e in events)
    assert s.events_by_type == {t: counts.get(t, 0) for t in EVENT_TYPES}
    by = s.events_by_type
    assert by["view"] > by["add_to_cart"] > by["purchase"] > 0 and by["dislike"] > 0
    assert len(list((out / "images").glob("*.png"))) == 400
    days = {e["timestamp"][:10] for e in events}
    assert 60 <= len(days) <= 95  # sessions spread over ~90 days
    assert "400 items" in str(s)


def test_colour_and_pattern_hidden_from_text_of_designated_share(mid: tuple[Path, DemoSummary]) -> None:
    out, _ = mid
    truth = json.loads((out / "truth.json").read_text())["items"]
    hidden = [it for it in _rows(out / "items.jsonl") if not truth[it["item_id"]]["mentions_look"]]
    assert 0.35 < len(hidden) / 400 < 0.65
    for it in hidden:
        text = " ".join(str(v) for k, v in it.items() if k not in ("item_id", "image")).lower()
        words = set(re.findall(r"[a-z]+", text))
        assert not words & LOOK_WORDS, (it, words & LOOK_WORDS)
        assert "colour" not in it and "pattern" not in it
    shown = [it for it in _rows(out / "items.jsonl") if truth[it["item_id"]]["mentions_look"]]
    assert all(truth[it["item_id"]]["colour"] in it["title"] for it in shown)


def _positives_split(events: list[dict]) -> dict[str, tuple[list[dict], dict]]:
    """user -> (history before the last cart/purchase, that last cart/purchase)."""
    by: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        by[e["user_id"]].append(e)
    out = {}
    for u, es in by.items():
        pos = [i for i, e in enumerate(es) if e["type"] in ("add_to_cart", "purchase")]
        if len(pos) >= 2:
            out[u] = (es[: pos[-1]], es[pos[-1]])
    return out


def test_later_events_follow_earlier_tastes_and_content_beats_popularity(mid: tuple[Path, DemoSummary]) -> None:
    """A content profile built from a user's history (category, colour, pattern, tier) finds the user's last
    cart/purchase far more often than chance and than global popularity."""
    out, _ = mid
    truth = json.loads((out / "truth.json").read_text())["items"]
    feats: dict[str, list[tuple[str, object]]] = {
        it["item_id"]: [("cat", it["category"])] + [(f, truth[it["item_id"]][f]) for f in ("colour", "pattern", "tier")]
        for it in _rows(out / "items.jsonl")}
    events = _rows(out / "events.jsonl")
    weight = {"view": 1.0, "add_to_cart": 2.0, "purchase": 3.0, "rating": 0.0, "dislike": -2.0}
    ids = sorted(feats)
    k = 20
    hits_content = hits_pop = agree = agree_chance = 0.0
    splits = _positives_split(events)
    assert len(splits) >= 60
    for hist, target in splits.values():
        pop = Counter(e["item_id"] for e in events if e["timestamp"] < target["timestamp"])
        prof: dict[tuple[str, object], float] = defaultdict(float)
        for e in hist:
            for f in feats[e["item_id"]]:
                prof[f] += weight[e["type"]]
        score = {i: sum(prof[f] for f in feats[i]) + 0.01 * math.log1p(pop[i]) for i in ids}
        hits_content += target["item_id"] in sorted(ids, key=lambda i: -score[i])[:k]
        hits_pop += target["item_id"] in sorted(ids, key=lambda i: (-pop[i], i))[:k]
        cats = {feats[e["item_id"]][0] for e in hist if e["type"] != "dislike"}
        agree += feats[target["item_id"]][0] in cats
        agree_chance += sum(feats[i][0] in cats for i in ids) / len(ids)
    n = len(splits)
    assert agree / n > agree_chance / n + 0.15  # the last positive is in an already-seen category
    assert hits_content / n > 2 * hits_pop / n
    assert hits_content / n > 5 * k / len(ids)  # way above chance


def test_dislikes_go_against_taste(mid: tuple[Path, DemoSummary]) -> None:
    out, _ = mid
    t = json.loads((out / "truth.json").read_text())
    items, users = t["items"], t["users"]
    events = _rows(out / "events.jsonl")
    dislikes = [e for e in events if e["type"] == "dislike"]
    purchases = [e for e in events if e["type"] == "purchase"]

    def in_palette(e: dict) -> float:
        return float(items[e["item_id"]]["colour"] in users[e["user_id"]]["palette"])

    assert sum(map(in_palette, dislikes)) / len(dislikes) < 0.5 * sum(map(in_palette, purchases)) / len(purchases)


def test_zipf_like_popularity(mid: tuple[Path, DemoSummary]) -> None:
    out, _ = mid
    counts = sorted(Counter(e["item_id"] for e in _rows(out / "events.jsonl")).values(), reverse=True)
    top = sum(counts[: len(counts) // 10])
    assert top / sum(counts) > 0.2  # the top 10% of items draw well over 10% of the events


@pytest.fixture(autouse=True)
def _settings_of_no_test() -> Iterator[None]:
    """The CLI tests below point RECSYS_HOME at their own stores; no later test may inherit the cached settings."""
    from recsys.config import get_settings

    yield
    get_settings.cache_clear()


def _cli(home: Path, *args: str) -> Any:
    from typer.testing import CliRunner

    from recsys.cli import app
    from recsys.config import get_settings

    get_settings.cache_clear()  # RECSYS_HOME is read once per process otherwise
    return CliRunner().invoke(app, list(args), env={"RECSYS_HOME": str(home)})


def _demo_cli(home: Path, *args: str) -> Any:
    return _cli(home, "demo", "--no-build", "--no-serve", *args)


def _item(home: Path, item_id: str) -> dict[str, Any]:
    return dict(json.loads(_cli(home, "items", "show", item_id, "--json").stdout))


def test_a_second_demo_keeps_what_was_deleted_since(tmp_path: Path) -> None:
    """A rerun imported the demo again, and a record with a title brings a deleted item back."""
    home = tmp_path / "home"
    first = _demo_cli(home, "--items", "12", "--users", "3")
    assert first.exit_code == 0, first.output
    assert _cli(home, "items", "delete", "item-00003").exit_code == 0
    again = _demo_cli(home, "--items", "12", "--users", "3")
    assert again.exit_code == 0 and "already imported" in again.output, again.output
    assert _item(home, "item-00003")["deleted"] is True
    assert _demo_cli(home, "--items", "12", "--users", "3", "--reimport").exit_code == 0
    assert _item(home, "item-00003")["deleted"] is False  # asked for: the demo's data as generated


def test_a_demo_of_another_size_is_refused_not_mixed_into_the_first(tmp_path: Path) -> None:
    # 30 items after 50 overwrote items 1-30, merged both demos' events and left a marker saying 30
    home = tmp_path / "home"
    assert _demo_cli(home, "--items", "12", "--users", "3").exit_code == 0
    for other in (["--items", "8", "--users", "3"], ["--items", "12", "--users", "3", "--seed", "1", "--reimport"]):
        refused = _demo_cli(home, *other)
        assert refused.exit_code != 0 and "holds a demo made with items=12 users=3 seed=0" in str(refused.exception)
    assert (home / "demo-data" / ".imported").read_text() == "items=12 users=3 seed=0\n"
    # mixed in on purpose: its events get ids of their own (the first demo's ids name other events: refused)
    mixed = _demo_cli(home, "--items", "8", "--users", "3", "--force")
    assert mixed.exit_code == 0, mixed.output
    ids = [json.loads(line)["event_id"] for line in (home / "demo-data" / "events.jsonl").read_text().splitlines()]
    assert all("-s0i8u3-e" in i for i in ids)


def test_the_demo_refuses_a_store_holding_other_data_and_bad_sizes(tmp_path: Path) -> None:
    home = tmp_path / "shop"
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"item_id": "sku-1", "title": "A real product"}) + "\n")
    assert _cli(home, "import", "items", str(items)).exit_code == 0
    refused = _demo_cli(home, "--items", "12", "--users", "3")
    assert refused.exit_code != 0 and "already holds a store the demo did not write (1 items" in str(
        refused.exception), refused.output
    assert not (home / "demo-data").exists()
    assert _demo_cli(home, "--items", "12", "--users", "3", "--force").exit_code == 0
    for bad in (["--items", "0"], ["--users", "-1"]):
        res = _demo_cli(tmp_path / "other", *bad)
        assert res.exit_code == 2 and "Invalid value" in res.output
