"""Personalised ranking: candidates from several sources, a learned content-native ranker, rules, explanations.

The names below are what notebooks and scripts need; the rest of the pipeline (serving, jobs, the CLI) imports
the submodules it uses directly::

    from recsys.ranking import RankingPipeline
    pipe = RankingPipeline.fit(events, items, vectors, settings)   # or RankingPipeline.load(dir, vectors=...)
    pipe.recommend(user_events, k=20, explain=True)

Modules load on first use (the pipeline brings torch), so ``recsys.ranking.params`` or a result type costs only
its own module.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recsys.ranking.artifact import current_generation, read_manifest, save_generation
    from recsys.ranking.candidates import SOURCES, ExactSearch, VectorSearch
    from recsys.ranking.catalog import SimpleVectors, VectorsLike
    from recsys.ranking.features import FEATURES
    from recsys.ranking.generations import load_current_ranker, rankers_root, train_ranker
    from recsys.ranking.params import RankingParams
    from recsys.ranking.pipeline import RankingPipeline
    from recsys.ranking.result import Recommendation

_EXPORTS = {
    "current_generation": "artifact", "read_manifest": "artifact", "save_generation": "artifact",
    "SOURCES": "candidates", "ExactSearch": "candidates", "VectorSearch": "candidates",
    "SimpleVectors": "catalog", "VectorsLike": "catalog",
    "FEATURES": "features",
    "load_current_ranker": "generations", "rankers_root": "generations", "train_ranker": "generations",
    "RankingParams": "params",
    "RankingPipeline": "pipeline", "Recommendation": "result",
}

__all__ = [
    "FEATURES",
    "SOURCES",
    "ExactSearch",
    "RankingParams",
    "RankingPipeline",
    "Recommendation",
    "SimpleVectors",
    "VectorSearch",
    "VectorsLike",
    "current_generation",
    "load_current_ranker",
    "rankers_root",
    "read_manifest",
    "save_generation",
    "train_ranker",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f"recsys.ranking.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'recsys.ranking' has no attribute {name!r}")
