"""Variants that rank with another stored ranker generation (``"ranker": "<version>"``).

When the API starts, each active variant's generation is looked up among those stored under ``<home>/rankers``
(by version, or by its ``ranker-`` id) and checked against the served index's encoder and dimension: a missing or
incompatible one stops the server with a ConfigError naming the experiment, the variant and the generations there
are. The variant then holds the generation's version, so a list's ``meta.ranker_version`` (and its recorded
``served_lists.ranker_version``) is the id of the ranker that ranked it. The generation itself is loaded on the
first request that needs it (:meth:`recsys.serving.generations.Generations.variant_ranker`).
"""

from __future__ import annotations

from recsys.config import Settings
from recsys.errors import ConfigError, RankerError
from recsys.experiments.definitions import Assignment, Experiments


def check_variant_rankers(experiments: Experiments, settings: Settings) -> Experiments:
    """``experiments`` with every active variant's ``ranker`` resolved to a stored generation's version;
    ConfigError (naming the experiment, the variant and the generations stored) when one is not stored or cannot
    rank the served index. Unchanged (nothing read) when no variant names a ranker."""
    named = [(e, v) for e in experiments.all if e.active for v in e.variants if v.ranker is not None]
    if not named:
        return experiments
    from recsys.ranking import rankers_root
    from recsys.serving.generations import find_generation

    encoder_id, dim = served_vectors(settings)
    versions: dict[tuple[str, str], str] = {}
    for exp, variant in named:
        assert variant.ranker is not None
        try:
            gen = find_generation(rankers_root(settings), variant.ranker, encoder_id, dim)
        except RankerError as e:
            raise ConfigError(f"experiment {exp.name!r}, variant {variant.name!r}: ranker: {e.message}") from None
        versions[exp.name, variant.name] = gen.version
    return experiments.with_rankers(versions)


def served_vectors(settings: Settings) -> tuple[str | None, int | None]:
    """Encoder id and dimension of the current index generation (what a ranker must fit); (None, None) before the
    first build (the generation is then checked on first use)."""
    from recsys.errors import NoIndex, NotFound
    from recsys.index import generation_path, index_root
    from recsys.index.layout import read_manifest

    try:
        m = read_manifest(generation_path(index_root(settings)))
    except (NoIndex, NotFound):
        return None, None
    return m.encoder_id, m.dim


def variant_ranker_id(assigned: Assignment | None) -> str | None:
    """The id of the ranker generation a variant ranks with (``ranker-<version>``, as ``/readyz`` names the served
    one; its ``ranker`` is a version once :func:`check_variant_rankers` resolved it); None: the served ranker."""
    if assigned is None or assigned.variant.ranker is None:
        return None
    return f"ranker-{assigned.variant.ranker}"
