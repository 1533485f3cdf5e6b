"""Personalised ranking: candidates from several sources, a learned content-native ranker, rules, explanations.

The public API is what this module exports; everything else is private to the package::

    from recsys.ranking import RankingPipeline
    pipe = RankingPipeline.fit(events, items, vectors, settings)   # or RankingPipeline.load(dir, vectors=...)
    pipe.recommend(user_events, k=20, explain=True)
"""

from recsys.ranking.artifact import current_generation, read_manifest, save_generation
from recsys.ranking.candidates import SOURCES, ExactSearch, VectorSearch
from recsys.ranking.catalog import SimpleVectors, VectorsLike
from recsys.ranking.features import FEATURES
from recsys.ranking.generations import load_current_ranker, rankers_root, train_ranker
from recsys.ranking.params import RankingParams
from recsys.ranking.pipeline import RankingPipeline, Recommendation

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
