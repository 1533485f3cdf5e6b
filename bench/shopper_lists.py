"""Lists a shopper accepts (issue 16), on a built store: the served personal list with the shopper-list caps (the
defaults) beside the same ranker with the caps off, for random users with at least 3 purchases.

    RECSYS_HOME=/path/to/hm .venv/bin/python bench/shopper_lists.py [--users 100] [--k 12] [--out bench/results]

Per setting: the mean share of the k picks the user already bought or saw, the users whose list holds one product
(H&M ``product_code``) more than twice, and the buy-again list's length. Ranked through ``Recommender.recommend``,
the path ``GET /v1/users/{id}/recommendations`` serves. Prints one JSON object (and writes
``--out``/shopper_lists.json).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _homes import require_built_settings  # noqa: E402

from recsys.service import Recommender  # noqa: E402
from recsys.store import Store  # noqa: E402
from recsys.store.queries import events_frame, items_frame  # noqa: E402


def measure(rec: Recommender, users: list[str], seen: dict[str, set[str]], group: dict[str, str], k: int,
            buy_again: bool) -> dict[str, Any]:
    shares, over, lengths = [], 0, []
    for u in users:
        ids = [r.item_id for r in rec.recommend(u, k, fresh=True)]
        shares.append(sum(i in seen[u] for i in ids) / max(len(ids), 1))
        counts = Counter(group[i] for i in ids if group.get(i))
        over += any(n > 2 for n in counts.values())
        if buy_again:
            lengths.append(len(rec.buy_again(u, k)))
    out = {"mean_share_already_seen": round(sum(shares) / len(shares), 4), "users_with_a_product_over_2": over}
    if buy_again:
        out["buy_again_mean_length"] = round(sum(lengths) / len(lengths), 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--k", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="folder the JSON is written to")
    a = ap.parse_args()
    settings = require_built_settings()  # Store.open would create an empty store at a mistyped RECSYS_HOME
    store = Store.open(settings)
    with store.session() as s:
        events, items = events_frame(s), items_frame(s)
    buys = events[events["type"] == "purchase"]
    counts = buys.groupby("user_id").size()
    eligible = sorted(str(u) for u in counts[counts >= 3].index)
    if not eligible or a.users < 1:
        raise SystemExit(f"shopper_lists.py: no shopper with >= 3 purchases in this store ({settings.home})"
                         if not eligible else "shopper_lists.py: --users must be at least 1")
    users = random.Random(a.seed).sample(eligible, min(a.users, len(eligible)))
    seen = {u: set(events.loc[events["user_id"] == u, "item_id"].astype(str)) for u in users}
    attrs = items.set_index("item_id")["attributes"] if "attributes" in items else None
    group = {str(i): str((v or {}).get("product_code", "")) for i, v in attrs.items()} if attrs is not None else {}
    capped = measure(Recommender(settings, store), users, seen, group, a.k, buy_again=True)
    off = settings.model_copy(update={"ranking": settings.ranking.model_copy(
        update={"max_repeat_share": 1.0, "max_per_group": 0})})
    uncapped = measure(Recommender(off, store), users, seen, group, a.k, buy_again=False)
    out = {"bench": "shopper_lists", "users": len(users), "k": a.k, "served_default": capped, "caps_off": uncapped,
           "settings": {"max_repeat_share": settings.ranking.max_repeat_share,
                        "max_per_group": settings.ranking.max_per_group}}
    dst = a.out / "shopper_lists.json"
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
