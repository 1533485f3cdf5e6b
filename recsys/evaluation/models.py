"""The models ``recsys evaluate`` asks as "ours" (:class:`recsys.jobs.Jobs` passes them to the runner): for stored
users a ranker fitted on the split's training part, asked as of each target time; for replayed users the time the
served path is asked at, so that its history cut leaves exactly the split's history."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from recsys.evaluation import Batch
    from recsys.index import IndexReader


SAME_TIME_STEP = 1e-6
"""Seconds past a MovieLens target that the served path is asked at (:func:`asked_at`)."""


def asked_at(split: Any, user: str) -> datetime:
    """When the served path ranks a replayed user: the time whose history cut (``recommend(now=T)`` drops the
    user's events at or after T) leaves exactly ``split.histories[user]``.

    For ``last_day`` (H&M) that is the target time itself: the start of the target day, everything before it being
    history. For ``last_interaction`` (MovieLens) the history also holds the ratings of the target's own second that
    precede it in file order (ml100k: 322 of 698 users end with several ratings in one second). Asked at T, ours
    alone lost them, while the baselines and the stored-split evaluation rank from them, and it could recommend them
    again. So ours is asked one microsecond later, the smallest step a datetime holds (MovieLens times are whole
    seconds). The target itself was never replayed, so exactly the split's history comes back; other shoppers'
    events of that very second may count in live statistics, where the baselines' counts stop just before it. The
    alternative, making the whole last second the target, would change the protocol for every model; this only
    aligns ours with it."""
    import pandas as pd

    at = pd.Timestamp(split.target_time[user])
    if split.protocol == "last_interaction":
        at += pd.Timedelta(seconds=SAME_TIME_STEP)
    return at.to_pydatetime()  # type: ignore[no-any-return]


def fitted_model(settings: Any, reader: IndexReader, items: pd.DataFrame, vectors: Any, removed: frozenset[str],
                  progress: Any, note: dict[str, Any], split: Any) -> Batch:
    """Ours for stored users: a ranker fitted on the split's training part only, asked as of each target time;
    ``note`` receives :func:`network_note` of it."""
    from recsys.evaluation import Batch
    from recsys.ranking import RankingPipeline

    # the co-purchase space is one fitted matrix, not counted as of each target: only what came before them all
    pipe = RankingPipeline.fit(split.train, items, vectors, settings, search=reader, progress=progress,
                               cobuy_before=split.earliest_target)
    note.update(network_note(pipe.manifest, pipe.net is not None))

    def fn(users: Sequence[str], hists: Sequence[pd.DataFrame], k: int) -> list[list[str]]:
        from threadpoolctl import threadpool_limits

        now = [split.target_time[u].to_pydatetime() for u in users]
        with threadpool_limits(1):  # many small matrix products: BLAS threads only contend
            recs = pipe.recommend_many([h if len(h) else None for h in hists], k, exclude=removed, now=now)
        return [[r.item_id for r in rs] for rs in recs]

    return Batch(fn)


def network_note(manifest: Mapping[str, Any], has_net: bool) -> dict[str, Any]:
    """The report fields that say whether a ranker learned anything: ``network`` false (no training example) means
    it ranks in candidate order, and ``no_network_reason`` says why."""
    if has_net:
        return {"network": True}
    return {"network": False, "fallback": manifest.get("fallback", "candidate order"),
            "no_network_reason": manifest.get("no_network_reason")}
