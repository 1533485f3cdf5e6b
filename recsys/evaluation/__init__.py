"""Offline evaluation: temporal leave-last-out splits, top-K metrics, baselines, the evaluation report.

    from recsys.evaluation import temporal_split, make_baselines, run_evaluation, Batch
    split = temporal_split(events, "auto")
    result = run_evaluation(split, {"ours": Batch(fn), **make_baselines(split, ids, vectors)}, k=20,
                            catalogue_size=len(ids))

Nothing heavy is imported here: scipy comes with the baselines module, on first use.
"""

from __future__ import annotations

from typing import Any

from recsys.evaluation.experiment import Batch, best_other, markdown_table, recommend_all, run_evaluation
from recsys.evaluation.metrics import coverage, per_user, summarize
from recsys.evaluation.runner import evaluate_split, evaluate_store, evaluate_test_events, replay_histories
from recsys.evaluation.splits import (
    Split,
    ingest_records,
    read_test_events,
    resolve_protocol,
    split_test_events,
    temporal_split,
)

__all__ = [
    "Batch",
    "ContentKNN",
    "ItemCooccurrence",
    "Popular",
    "Split",
    "best_other",
    "coverage",
    "evaluate_split",
    "evaluate_store",
    "evaluate_test_events",
    "ingest_records",
    "make_baselines",
    "markdown_table",
    "per_user",
    "read_test_events",
    "recommend_all",
    "replay_histories",
    "resolve_protocol",
    "run_evaluation",
    "split_test_events",
    "summarize",
    "temporal_split",
]

_LAZY = {"ContentKNN", "ItemCooccurrence", "Popular", "make_baselines"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from recsys.evaluation import baselines

        return getattr(baselines, name)
    raise AttributeError(f"module 'recsys.evaluation' has no attribute {name!r}")
