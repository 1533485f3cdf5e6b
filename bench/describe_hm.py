"""Descriptions from images on H&M, held out: what the generated text is worth where the merchant's text is missing.

``--n`` random articles with an image are held out: the encoder's heads are refitted (in memory, same parameters as
``recsys encoder fit``) on the other articles' (image, text) pairs, then the held-out articles are described from
their images alone (``describe_items`` with the hm vocabulary, written to the store given: use a copy). Over the
held-out articles, side by side, the real text (the configured text fields) against the generated description only:

- text -> image retrieval: each article's text vector against the held-out images; recall@10 of its own image;
- search precision: ``--broad`` "<colour> <product type>" queries (pairs with at least 5 held-out articles), the
  held-out articles ranked by their text vectors; precision@10 of colour, of type and of both (H&M's own fields);
- facets: colour and garment type of the generated text against H&M's ``colour_group_name`` / ``product_type_name``,
  with the hm vocabulary's neighbour vote and colour probe (the other articles' colour and type; the held-out
  articles' own fields are never read: ``label_exclude``) and, in the same run, without the probe (``probe=False``,
  the vote and zero-shot: the figures before the probe) and zero-shot only (``neighbours=0``).

    python bench/describe_hm.py --home /tmp/hm_desc [--copy-from HM_HOME] [--n 1000 --broad 30 --seed 0] > result.json
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from _homes import InputError, exit_if_unusable, holds
from sqlalchemy import select

from recsys.config import Settings
from recsys.describe import describe_items, load_vocabulary
from recsys.encoders.catalog import item_pks, read_items
from recsys.encoders.embed import encode_items
from recsys.encoders.encoder import get_encoder
from recsys.encoders.fit import build_pairs, fit_on_pairs
from recsys.encoders.text import ItemRecord
from recsys.encoders.training import FitParams
from recsys.store import Item, Store
from recsys.store.descriptions import generated_texts, remove_descriptions
from recsys.store.tables import ItemDescription


def _norm(s: str | None) -> str:
    return (s or "").lower().replace("/", " ").replace("-", " ").strip()


MASTER = {"off white": "white", "greenish khaki": "khaki green", "yellowish brown": "brown", "gold": "metal",
          "silver": "metal", "purple": "lilac purple", "light purple": "lilac purple", "dark purple": "lilac purple",
          "greyish beige": "mole"}
"""A generated colour label -> H&M's perceived (master) colour, where dropping "dark"/"light" is not enough."""


def _master(label: str) -> str:
    label = _norm(label)
    return MASTER.get(label, label.removeprefix("dark ").removeprefix("light "))


def _recall_at(texts: np.ndarray, images: np.ndarray, k: int = 10) -> float:
    sims = texts @ images.T
    own = np.diag(sims)
    return float(np.mean((sims > own[:, None]).sum(1) < k))


def _precision(query_vecs: np.ndarray, item_vecs: np.ndarray, truth: list[tuple[str, str]],
               queries: list[tuple[str, str]], k: int = 10) -> dict[str, float]:
    col = typ = both = 0.0
    for q, (c, t) in zip(query_vecs, queries, strict=True):
        top = np.argsort(-(item_vecs @ q))[:k]
        col += np.mean([truth[i][0] == c for i in top])
        typ += np.mean([truth[i][1] == t for i in top])
        both += np.mean([truth[i] == (c, t) for i in top])
    n = max(len(queries), 1)
    return {"colour": round(col / n, 3), "type": round(typ / n, 3), "both": round(both / n, 3)}


def _facet_accuracy(store: Store, items: list[ItemRecord], held: list[int], held_ids: set[str],
                    vocab: Any) -> dict[str, float]:
    """Colour (exact shade and master) and type of the stored generated facets against H&M's fields."""
    with store.session() as s:
        ext = dict(s.execute(select(Item.id, Item.external_id)).all())
        facets = {ext[d.item_id]: d.facets for d in s.scalars(select(ItemDescription))
                  if ext.get(d.item_id) in held_ids}
    hold = [items[i] for i in held if items[i].item_id in facets]
    colour_ok = master_ok = type_ok = in_vocab = 0
    garments = {_norm(x) for x in vocab.facets[2].labels}  # _norm: "leggings/tights" == H&M's
    for it in hold:
        f = {x["facet"]: x for x in facets[it.item_id]}
        colour_ok += _norm(f["colour"]["label"]) == _norm(it.attributes.get("colour"))
        master_ok += _master(f["colour"]["label"]) == _norm(it.attributes.get("perceived_colour"))
        kind = _norm(it.category)
        type_ok += _norm(f["garment"]["label"]) == kind
        in_vocab += kind in garments
    n = max(len(hold), 1)
    return {"generated_colour_correct": round(colour_ok / n, 3),
            "generated_master_colour_correct": round(master_ok / n, 3),
            "generated_type_correct": round(type_ok / n, 3), "type_in_vocabulary": round(in_vocab / n, 3),
            "generated_type_correct_where_in_vocabulary": round(type_ok / max(in_vocab, 1), 3)}


MARKER = ".describe_hm-copy"
"""Written into ``--home`` when this script makes the copy: the only kind of folder it ever removes."""


def prepare_home(home: Path, src: Path | None) -> None:
    """Copy ``src`` to ``home`` (a previous copy of this script's replaced), after refusing anything that could lose
    data: ``src`` at, inside or around ``home``, or a ``home`` that is not a copy made here. Without ``src``,
    ``home`` must already be a store (it is written, never created)."""
    if src is None:
        if not (home / "recsys.db").is_file():
            raise InputError(f"--home {home}: no store database {home / 'recsys.db'}; give a copy of an embedded H&M "
                             "home, or --copy-from HM_HOME to make one there")
        return
    if not (src / "recsys.db").is_file():
        raise InputError(f"--copy-from {src}: no store database {src / 'recsys.db'} (an embedded H&M home)")
    if holds(home, src) or holds(src, home):
        raise InputError(f"--home {home} and --copy-from {src} overlap (one is, or is inside, the other); --home "
                         "must be a separate folder: it is replaced by the copy")
    if home.exists() and not home.is_dir():
        raise InputError(f"--home {home} is not a folder; nothing was removed")
    if home.exists() and any(home.iterdir()) and not (home / MARKER).is_file():
        raise InputError(f"--home {home} exists and is not a copy made by describe_hm.py (no {MARKER} in it); "
                         "nothing was removed: choose a new folder, or remove it yourself")
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    (home / MARKER).write_text(f"a copy of {src.resolve()} made by bench/describe_hm.py; removed by its next run\n")
    shutil.copytree(src, home, ignore=shutil.ignore_patterns("indexes", "onnx", "reports", MARKER),
                    dirs_exist_ok=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--home", type=Path, required=True, help="a COPY of an embedded H&M home (it is written)")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--broad", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--copy-from", type=Path, default=None,
                    help="an embedded H&M home copied to --home first (its store and feature cache; read only)")
    args = ap.parse_args()
    exit_if_unusable(lambda: prepare_home(args.home, args.copy_from))
    settings = Settings(home=args.home)
    settings.encoder.runtime = "torch"
    store = Store(settings.db_url)
    store.upgrade()
    t0 = time.perf_counter()
    items = [it for it in read_items(store) if it.media]
    rng = random.Random(args.seed)
    held = sorted(rng.sample(range(len(items)), args.n))
    held_ids = {items[i].item_id for i in held}
    base = get_encoder(settings, fitted=False)
    data, _ = build_pairs(base, [it for it in items if it.item_id not in held_ids], settings)
    enc, metrics, n_train, _ = fit_on_pairs(base, data, FitParams(seed=args.seed, val_pairs=200))
    fit_s = time.perf_counter() - t0
    vocab = load_vocabulary("hm")
    describe_items(store, settings, vocab, item_ids=sorted(held_ids), encoder=enc, neighbours=0)
    zero_shot = _facet_accuracy(store, items, held, held_ids, vocab)
    with store.session() as s:  # an item unconfident below must not keep an earlier run's description
        remove_descriptions(s, item_pks(store, sorted(held_ids)).values())
    describe_items(store, settings, vocab, item_ids=sorted(held_ids), encoder=enc, label_exclude=held_ids,
                   probe=False)
    without_probe = _facet_accuracy(store, items, held, held_ids, vocab)
    with store.session() as s:
        remove_descriptions(s, item_pks(store, sorted(held_ids)).values())
    report = describe_items(store, settings, vocab, item_ids=sorted(held_ids), encoder=enc, label_exclude=held_ids)
    with store.session() as s:
        ext = dict(s.execute(select(Item.id, Item.external_id)).all())
        gen = {ext[pk]: t for pk, t in generated_texts(s).items() if ext.get(pk) in held_ids}
    hold = [items[i] for i in held if items[i].item_id in gen]
    real_text, image, has_image, _ = encode_items(enc, hold, settings)
    only_gen = [ItemRecord(it.item_id, generated_description=gen[it.item_id], media=it.media) for it in hold]
    gen_settings = settings.model_copy(deep=True)
    gen_settings.encoder.text_fields = {"generated_description": 1.0}
    gen_text, _, _, _ = encode_items(enc, only_gen, gen_settings)
    truth = [(_norm(it.attributes.get("colour")), _norm(it.category)) for it in hold]
    pairs = Counter(truth)
    queries = [p for p, c in pairs.most_common() if c >= 5 and p[0] and p[1]]
    queries = rng.sample(queries, min(args.broad, len(queries)))
    qvecs = enc.encode_texts([f"{c} {t}" for c, t in queries])
    acc = _facet_accuracy(store, items, held, held_ids, vocab)
    out: dict[str, Any] = {
        "held_out": len(hold), "pairs_train": n_train, "encoder_val": metrics, "seed": args.seed,
        "described": report.described, "failed": report.failed,
        "text_to_image_recall@10": {"real_text": round(_recall_at(real_text, image), 3),
                                    "generated_only": round(_recall_at(gen_text, image), 3)},
        "broad_queries": len(queries),
        "precision@10": {"real_text": _precision(qvecs, real_text, truth, queries),
                         "generated_only": _precision(qvecs, gen_text, truth, queries)},
        **acc, "without_probe": without_probe, "zero_shot_only": zero_shot, "unconfident": report.unconfident,
        "examples": dict(list(gen.items())[:5]),
        "seconds": {"fit": round(fit_s, 1), "total": round(time.perf_counter() - t0, 1)},
        "has_image": int(has_image.sum()),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
