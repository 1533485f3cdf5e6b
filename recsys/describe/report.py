"""What a ``recsys items describe`` run did, and what to warn about: facets whose ``field`` no item's value matches
(they keep their zero-shot score), replaced descriptions of another vocabulary, and a vocabulary that fits the
catalogue's photos poorly (most descriptions resting on labels scored under :data:`LOW_SCORE`).

Measured on the demo catalogue (product photos) and MovieLens (film posters) with the generic vocabulary: labels
written under 0.5 were 11% (colour), 14% (pattern), 25% (kind) of the demo's but 86%, 54%, 76% of MovieLens's, and
descriptions resting mostly on such labels were 6% of the demo's and 81% of MovieLens's ("Pink patterned toy." for
Toy Story). Half is the bar between them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from recsys.describe.vocabulary import Facet, Vocabulary

LOW_SCORE = 0.5
"""A written label scored under this (less than an even chance over its facet's labels) is a low-confidence one."""
FEW_LABELLED = 10
"""A facet's field matching fewer items than this is said: its neighbour vote and probe rest on that few."""
MIN_SEEN = 10
"""Confidence warnings need this many descriptions (a facet: this many written labels): one item says little."""


@dataclass
class DescribeReport:
    encoder_id: str
    vocabulary: str
    items: int
    """Items considered (after --only-missing and --limit)."""
    described: int
    """Items that got a (new or replaced) generated description."""
    unconfident: int
    """Items with a decodable image but no facet confident enough to say anything."""
    withdrawn: int
    """Of those, items whose earlier generated description was removed: it said what this photo does not support."""
    failed: int
    """Items without a decodable image (reasons in ``errors``)."""
    seconds: float
    errors: dict[str, str] = field(default_factory=dict)
    """Item id -> reason (first 100): the failed and the skipped items."""
    examples: dict[str, str] = field(default_factory=dict)
    """A few item id -> description, for a look."""
    labelled: dict[str, int] = field(default_factory=dict)
    """Facet naming a field -> the items (with an image, other than excluded ones) whose value is one of its labels:
    its neighbour voters and probe's training items (0: the facet kept its zero-shot score)."""
    facets: dict[str, dict[str, int]] = field(default_factory=dict)
    """Facet -> {"written": items whose description says its label, "low": of those, scored under LOW_SCORE}."""
    low_confidence: int = 0
    """Descriptions whose written labels scored under LOW_SCORE for half of them or more."""
    replaced: dict[str, int] = field(default_factory=dict)
    """Vocabulary -> descriptions it had written that this run (of another vocabulary) replaced."""
    warnings: list[str] = field(default_factory=list)
    skipped: int = 0
    """Items not written (nor withdrawn): their images changed, or they were deleted, while the run scored them
    (reasons in ``errors``); what was scored described the old images. A re-run describes them."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def written(vocabulary: Vocabulary) -> list[Facet]:
    """The facets a description says (named in the sentence)."""
    return [f for f in vocabulary.facets if "{" + f.name + "}" in vocabulary.sentence]


def tally(report: DescribeReport, vocabulary: Vocabulary, facets: Sequence[Mapping[str, Any]]) -> None:
    """Count one written description's facets (as stored: facet, label, score, used) into ``report``."""
    said = {f.name: f for f in written(vocabulary)}
    low = []
    for x in facets:
        f = said.get(x["facet"])
        if f is None or not x["used"] or x["label"] in f.omit:
            continue
        counts = report.facets.setdefault(f.name, {"written": 0, "low": 0})
        counts["written"] += 1
        counts["low"] += x["score"] < LOW_SCORE
        low.append(x["score"] < LOW_SCORE)
    report.low_confidence += bool(low) and 2 * sum(low) >= len(low)


def run_warnings(report: DescribeReport, vocabulary: Vocabulary, probed: bool) -> list[str]:
    """The run's warnings (see the module docstring), one line each."""
    out = []
    for f in vocabulary.facets:
        n = report.labelled.get(f.name)
        if n is None or n >= FEW_LABELLED:
            continue
        if n == 0:
            what = "neighbour vote" + (" or probe" if probed and f.probe_weight > 0 else "")
            out.append(f"facet {f.name!r}: no item's {f.field} is one of its labels, so it had no {what} (zero-shot "
                       "only); check the field and the labels' spelling")
        else:
            out.append(f"facet {f.name!r}: only {n} items' {f.field} is one of its labels; its neighbour vote "
                       "rests on them")
    for name, c in report.facets.items():
        if c["written"] >= MIN_SEEN and 2 * c["low"] > c["written"]:
            out.append(f"facet {name!r}: {c['low']} of its {c['written']} written labels scored under {LOW_SCORE}")
    if report.described >= MIN_SEEN and 2 * report.low_confidence > report.described:
        out.append(f"{report.low_confidence} of {report.described} descriptions rest mostly on labels scored under "
                   f"{LOW_SCORE}: vocabulary {vocabulary.name!r} may not fit this catalogue's photos; write one for "
                   "its domain (--vocabulary FILE)")
    if report.skipped:
        out.append(f"{report.skipped} items skipped: their images changed, or they were deleted, during the run, so "
                   "the descriptions scored from their old images were not written; run describe again for them")
    return out
