"""A/B experiments: variants defined in configuration, users assigned by salted hash, and their report.

``load_experiments`` reads ``experiments.definitions`` and ``experiments.file``; ``Experiments.assign`` gives a
user's variant on a surface; ``check_variant_rankers`` resolves the ranker generations variants name and
``VariantItems`` looks up the item ids they name (both at the API's start); ``experiment_report`` compares the
variants' CTR and conversion rate with the control.
"""

from recsys.experiments.definitions import (
    SURFACES,
    Assignment,
    Experiment,
    Experiments,
    Variant,
    load_experiments,
    parse_experiments,
)
from recsys.experiments.items import VariantItems
from recsys.experiments.rankers import check_variant_rankers, variant_ranker_id
from recsys.experiments.report import experiment_report

__all__ = ["SURFACES", "Assignment", "Experiment", "Experiments", "Variant", "VariantItems", "check_variant_rankers",
           "experiment_report", "load_experiments", "parse_experiments", "variant_ranker_id"]
