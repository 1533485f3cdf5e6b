"""A dataset's own interaction file for ``recsys evaluate --test-events`` (H&M's transactions.csv, MovieLens'
u.data) read into events. :func:`recsys.evaluation.splits.read_test_events` is the entry point; it reads a shop's
own events file too (:mod:`recsys.evaluation.own_events`)."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.errors import ImportFailed, ValidationFailed

log = logging.getLogger(__name__)

COLUMNS = ["user_id", "item_id", "type", "value", "ts", "client_event_id"]

MOVIELENS_LAYOUT = ("MovieLens u.data is tab-separated, one rating a line: user id, item id, rating, unix seconds, "
                    "no header; a comma- or '::'-separated file (such as MovieLens-1M's ratings.dat) needs its "
                    "separators turned into tabs")


def read_dataset_events(path: Path, fmt: str, *, max_bad_fraction: float = 0.2) -> pd.DataFrame:
    """``hm`` or ``movielens`` events of ``path`` (see ``read_test_events``), client event ids derived as the
    importers derive them. Bad rows are skipped and logged; more than ``max_bad_fraction`` of them raises
    :class:`ImportFailed`, as does a file that is not in the format's layout (saying what the layout is)."""
    from recsys.store.importers.hm import purchase_event
    from recsys.store.importers.movielens import rating_event

    try:
        if fmt == "hm":
            raw = pd.read_csv(path, dtype=str, keep_default_na=False)
            need = {"t_dat", "customer_id", "article_id"}
            if not need <= set(raw.columns):
                raise ImportFailed(f"{path}: H&M transactions need columns {sorted(need)}, found {list(raw.columns)}")
        elif fmt == "movielens":
            raw = pd.read_csv(path, sep="\t", header=None, dtype=str, keep_default_na=False,
                              names=["user_id", "item_id", "rating", "timestamp"], usecols=[0, 1, 2, 3])
        else:
            raise ValidationFailed(f"unknown dataset format {fmt!r}; choose hm or movielens")
    except pd.errors.EmptyDataError:
        raise ImportFailed(f"{path}: the test-events file is empty") from None
    except pd.errors.ParserError as e:  # mostly another separator: the columns do not split
        layout = f"; {MOVIELENS_LAYOUT}" if fmt == "movielens" else ""
        raise ImportFailed(f"{path}: cannot read test events ({e}){layout}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ImportFailed(f"{path}: cannot read test events ({e})") from None
    rows: list[dict[str, Any]] = []
    bad: list[str] = []
    seen: Counter[tuple[str, ...]] = Counter()
    for line, rec in enumerate(raw.to_dict("records"), start=2 if fmt == "hm" else 1):
        try:
            r = purchase_event(rec, seen) if fmt == "hm" else rating_event(rec)
            rows.append({"user_id": r.user_id, "item_id": r.item_id, "type": r.type, "value": r.value,
                         "ts": r.ts, "client_event_id": r.client_event_id})
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            bad.append(f"line {line}: {e}")
    if bad:
        log.warning("%s: skipped %d bad row(s), first: %s", path, len(bad), bad[0])
        if len(bad) > max_bad_fraction * max(len(raw), 1):
            raise ImportFailed(f"{path}: {len(bad)} of {len(raw)} rows unreadable (first: {bad[0]})")
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["ts"] = pd.to_datetime(df["ts"])
    return df
