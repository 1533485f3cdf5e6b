"""Write the demo dataset to a directory: items.jsonl, users.jsonl, events.jsonl, images/, truth.json."""

from __future__ import annotations

import io
import json
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from recsys.demo.behaviour import make_users, simulate
from recsys.demo.catalog import make_catalog
from recsys.demo.images import render_item

log = logging.getLogger(__name__)

EVENT_TYPES = ("view", "add_to_cart", "purchase", "dislike", "rating")


@dataclass(frozen=True)
class DemoSummary:
    """What :func:`generate_demo` wrote."""

    out_dir: Path
    items: int
    users: int
    events: int
    images: int
    events_by_type: dict[str, int] = field(default_factory=dict)
    seed: int = 0

    def __str__(self) -> str:
        by_type = ", ".join(f"{k}={v}" for k, v in self.events_by_type.items())
        return f"{self.items} items ({self.images} images), {self.users} users, {self.events} events ({by_type})"


def _write_jsonl(path: Path, rows: Iterable[dict[str, object]]) -> int:
    n = 0
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
            n += 1
    return n


def _write_if_changed(path: Path, data: bytes) -> None:
    """Same bytes already there: the file is left alone, so its time does not change and the embedding cache (keyed
    on path, size and time) has nothing to encode again when the demo is made a second time."""
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return
    except OSError:
        pass
    path.write_bytes(data)


def generate_demo(out_dir: Path, *, n_items: int = 2000, n_users: int = 300, seed: int = 0,
                  look_hidden_share: float = 0.5, event_tag: str = "") -> DemoSummary:
    """Write a deterministic demo dataset into ``out_dir`` (created; files there are overwritten).

    Files: ``items.jsonl`` (item_id, title, description, category, price, in_stock, image relative to out_dir, and
    attributes brand, material, department, plus colour and pattern where the text mentions them), ``images/NNNNN.png``
    (128x128), ``users.jsonl`` (user_id, age_band, region), ``events.jsonl`` (event_id unique per user, user_id,
    item_id, type, timestamp ISO 8601 UTC, value for ratings) and ``truth.json`` (the hidden colour, pattern and tier of
    every item and the tastes of every user, for tests and evaluation; not meant for import).
    Same arguments give byte-identical files.
    """
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    items = make_catalog(n_items, seed, look_hidden_share=look_hidden_share)
    for it in items:
        buf = io.BytesIO()
        render_item(it.category, it.colour, it.pattern, it.render_seed).save(buf, format="PNG", optimize=False,
                                                                              compress_level=6)
        _write_if_changed(out_dir / str(it.record["image"]), buf.getvalue())
    n_items_written = _write_jsonl(out_dir / "items.jsonl", (it.record for it in items))
    users = make_users(n_users, items, seed)
    n_users_written = _write_jsonl(out_dir / "users.jsonl", (u.record() for u in users))
    events = simulate(users, items, seed, event_tag)
    _write_jsonl(out_dir / "events.jsonl", events)
    truth = {
        "seed": seed,
        "items": {it.item_id: {"colour": it.colour, "pattern": it.pattern, "tier": it.tier,
                               "mentions_look": it.mentions_look, "popularity": round(it.popularity, 8)}
                  for it in items},
        "users": {u.user_id: u.truth() for u in users},
    }
    (out_dir / "truth.json").write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    counts = Counter(str(e["type"]) for e in events)
    summary = DemoSummary(out_dir=out_dir, items=n_items_written, users=n_users_written, events=len(events),
                          images=len(items), events_by_type={t: counts.get(t, 0) for t in EVENT_TYPES}, seed=seed)
    log.info("demo data in %s: %s", out_dir, summary)
    return summary
