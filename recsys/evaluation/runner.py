"""The two evaluation entry points behind ``recsys evaluate`` (DESIGN.md section 4), free of store and service imports.

The caller supplies ``make_ours(split) -> recommender``: for the stored-events protocol it must fit the ranker on
``split.train`` (the built ranker has seen the targets); for ``--test-events`` the built ranker is fine (the
withheld users are not in the store), the histories having been replayed through ``replay`` first.
``item_ids`` is the recommendable catalogue and ``exclude`` what ours may not return (hidden, deleted): the
baselines get both, and targets on items outside the one or inside the other are dropped for every model alike
(``targets_unservable`` counts them, ``users_unservable`` the users left with no target at all;
``users_too_short`` counts the users with a target left out for too short a history, ``split.min_history``).

    result = evaluate_store(events, make_ours=fit_on_split, item_ids=ids, vectors=fused, k=20)
    result = evaluate_test_events(path, "hm", store_events=events, replay=rec.catalogue.ingest_events,
                                  make_ours=lambda split: live, item_ids=ids, vectors=fused, k=20,
                                  known_users=users)
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recsys.errors import ValidationFailed
from recsys.evaluation.experiment import Batch, Recommend, run_evaluation
from recsys.evaluation.splits import (
    Split,
    default_target_types,
    ingest_records,
    read_test_events,
    refuse_format_words,
    resolve_protocol,
    split_test_events,
    temporal_split,
)

if TYPE_CHECKING:
    from recsys.evaluation.own_events import ReadOptions

log = logging.getLogger(__name__)

MakeRecommender = Callable[[Split], "Recommend | Batch"]
Replay = Callable[[Sequence[Mapping[str, Any]]], Sequence[Any]]


def _nothing_to_evaluate(info: Mapping[str, Any]) -> ValidationFailed:
    """Why a split has no user, in words: the part being empty of eligible users, or the users themselves."""
    part, eligible = info.get("part"), info.get("eligible_users") or 0
    if part is not None and eligible:
        return ValidationFailed(
            f"nothing to evaluate: {eligible} eligible user(s), none in part {part!r} (users are assigned by a salted "
            "hash: 1/2 train, 1/4 validation, 1/4 test); use `--part all` on a small store")
    dropped = info.get("dropped_unknown_items")
    only_dislikes = info.get("users_only_dislikes") or 0
    return ValidationFailed(
        "nothing to evaluate: no user has both a history and a target"
        + (f" ({info.get('test_events')} test events, {dropped} of them on items unknown to the store)"
           if dropped is not None else "")
        + "; every evaluated user needs positive events (dislikes do not count) on at least two days, the last "
        "with a purchase (H&M, and a shop's own events with purchases), or at least two events (MovieLens ratings, "
        "a shop's own events without purchases)"
        + (f"; {only_dislikes} of the {info.get('users_with_events')} users with events have only dislikes"
           if only_dislikes else ""))


def evaluate_split(split: Split, *, make_ours: MakeRecommender | None, item_ids: Sequence[str],
                   vectors: np.ndarray | None, k: int = 20, catalogue_size: int | None = None,
                   peers: Mapping[str, Recommend | Batch] | None = None, timings: Mapping[str, float] | None = None,
                   extra: Mapping[str, Any] | None = None, content_vectors: np.ndarray | None = None,
                   exclude: Collection[str] = ()) -> dict[str, Any]:
    """Fit ours (timed) and the baselines on ``split`` and evaluate them all at ``k``; the baselines recommend from
    ``item_ids`` less ``exclude``, as ours does."""
    from recsys.evaluation.baselines import make_baselines

    if not split.users:
        raise _nothing_to_evaluate(split.info)
    t = dict(timings or {})
    recs: dict[str, Recommend | Batch] = {}
    if make_ours is not None:
        t0 = time.perf_counter()
        recs["ours"] = make_ours(split)
        t["fit_ours"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    recs.update(make_baselines(split, item_ids, vectors, content_vectors=content_vectors, exclude=exclude))
    t["fit_baselines"] = time.perf_counter() - t0
    recs.update(peers or {})
    return run_evaluation(split, recs, k=k, catalogue_size=catalogue_size or len(item_ids), timings=t,
                          extra={"targets_unservable": split.info.get("targets_unservable", 0),
                                 "users_unservable": split.info.get("users_unservable", 0),
                                 "users_too_short": split.info.get("users_too_short", 0), "split": split.info,
                                 **(extra or {})})


def evaluate_store(events: pd.DataFrame, *, make_ours: MakeRecommender | None, item_ids: Sequence[str],
                   vectors: np.ndarray | None, k: int = 20, protocol: str = "auto", max_users: int | None = None,
                   seed: int = 0, min_history: int = 1, part: str | None = "test", exclude: Collection[str] = (),
                   **kw: Any) -> dict[str, Any]:
    """Temporal leave-last-out over the stored events (``recsys evaluate``), on the users of ``part``."""
    t0 = time.perf_counter()
    split = temporal_split(events, protocol, min_history=min_history, max_users=max_users, seed=seed,
                           items=set(map(str, item_ids)) - set(map(str, exclude)), part=part)
    return evaluate_split(split, make_ours=make_ours, item_ids=item_ids, vectors=vectors, k=k,
                          timings={"split": time.perf_counter() - t0}, exclude=exclude, **kw)


def replay_histories(split: Split, replay: Replay, batch_size: int = 1000) -> dict[str, int]:
    """Send every history event through the live ingestion path; counts by result status."""
    counts: Counter[str] = Counter()
    records = [r for u in split.users for r in ingest_records(split.histories[u])]
    for i in range(0, len(records), batch_size):
        for res in replay(records[i: i + batch_size]):
            counts[str(getattr(res, "status", res))] += 1
    if counts.get("error"):
        log.warning("replay: %d event(s) rejected by ingestion", counts["error"])
    return dict(counts)


def protocol_for_test_events(fmt: str, test: pd.DataFrame, store_events: pd.DataFrame,
                             protocol: str = "auto") -> tuple[str, tuple[str, ...] | None]:
    """The protocol and target types (None: the split's default) that withheld users of ``fmt`` are cut by.

    ``hm`` and ``movielens`` name their dataset's protocol. A shop's own events (``events``) are cut as the stored
    split cuts the shop's stored users: ``protocol`` (``auto`` unless ``--protocol`` says otherwise) decided over the
    stored events and the file's together, so ``last_day`` with purchases as the targets whenever the shop has
    purchases, and the withheld figure compares with the stored split's.
    """
    refuse_format_words(fmt, protocol, "given")  # a library caller's contradicting protocol, as the CLI's
    if fmt == "hm":
        return "last_day", None
    if fmt == "movielens":
        return "last_interaction", None
    stored = store_events["type"] if "type" in store_events.columns else pd.Series([], dtype=str)
    types = pd.concat([stored, test["type"]], ignore_index=True).astype(str).to_frame("type")
    p = resolve_protocol(protocol, types)
    return p, default_target_types(p, types)


def evaluate_test_events(path: Path | str, fmt: str, *, store_events: pd.DataFrame, replay: Replay | None,
                         make_ours: MakeRecommender | None, item_ids: Sequence[str], vectors: np.ndarray | None,
                         k: int = 20, known_users: Collection[str] | None = None, min_history: int = 1,
                         max_bad_fraction: float = 0.2, exclude: Collection[str] = (), protocol: str = "auto",
                         options: ReadOptions | None = None, **kw: Any) -> dict[str, Any]:
    """``recsys evaluate --test-events FILE --format hm|movielens|events``: withheld users, histories replayed
    first. ``protocol`` and the file's read ``options`` apply to ``events`` only (:func:`protocol_for_test_events`)."""
    t0 = time.perf_counter()
    test = read_test_events(path, fmt, max_bad_fraction=max_bad_fraction, options=options)
    cut, target_types = protocol_for_test_events(fmt, test, store_events, protocol)
    known = set(map(str, item_ids))
    split = split_test_events(test, cut, train_events=store_events, known_users=known_users,
                              known_items=known, min_history=min_history, items=known - set(map(str, exclude)),
                              target_types=target_types)
    timings = {"split": time.perf_counter() - t0}
    replayed: dict[str, int] = {}
    if replay is not None:
        t1 = time.perf_counter()
        replayed = replay_histories(split, replay)
        timings["replay"] = time.perf_counter() - t1
    extra = {"source": f"test_events:{fmt}", "replayed": replayed, **kw.pop("extra", {})}
    return evaluate_split(split, make_ours=make_ours, item_ids=item_ids, vectors=vectors, k=k, timings=timings,
                          extra=extra, exclude=exclude, **kw)
