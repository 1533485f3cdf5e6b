"""Whether queries can be answered against an index generation: what ``recsys index rollback`` refuses by, and what
readiness reports (:meth:`recsys.serving.generations.Generations.status`).

A generation is servable when the encoder that queries against it are encoded with (as the serving side picks it
from the configuration: a :data:`QueryEncoder`) has its encoder id and dimension, and can encode at all: heads fitted
for other towers than the configured ones (another ``RECSYS_ENCODER__RUNTIME``, a local checkpoint replaced in place)
are refused when loaded, so every query against a generation of them fails.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from recsys.errors import IncompatibleArtifact

if TYPE_CHECKING:
    from recsys.index.layout import Manifest

log = logging.getLogger(__name__)

QueryEncoder = Callable[[str], tuple[str, int | None] | None]
"""For a generation's encoder id, the id and dimension (None: unknown) of the encoder that queries against it are
encoded with, as the serving side picks it from the configuration; None when that cannot be told.
IncompatibleArtifact (saying why) when no query can be encoded for it: the heads that would encode them were fitted
for other towers than the configured ones (:func:`recsys.encoders.encoder.query_encoder_of`)."""

Query = tuple[str, int | None] | None


def query_of(query_encoder: QueryEncoder | None, encoder_id: str) -> tuple[Query, str | None]:
    """``query_encoder``'s answer for ``encoder_id``, and why no query can be encoded for it (None when one can,
    or when that cannot be told)."""
    if query_encoder is None:
        return None, None
    try:
        return query_encoder(encoder_id), None
    except IncompatibleArtifact as e:
        return None, e.message


def serves(q: Query, m: Manifest) -> bool:
    """Whether queries encoded as ``q`` (see :data:`QueryEncoder`) land in generation ``m``'s space."""
    return q is not None and q[0] == m.encoder_id and q[1] in (None, m.dim)


def fitting(gens: Sequence[Manifest], query_encoder: QueryEncoder) -> list[str]:
    """The ids of the generations of ``gens`` that queries can be answered against, in their order."""
    return [m.generation_id for m in gens if serves(query_of(query_encoder, m.encoder_id)[0], m)]


def unqueryable(m: Manifest, gens: Sequence[Manifest], query_encoder: QueryEncoder) -> str | None:
    """Why no query can be encoded for generation ``m`` (see :data:`QueryEncoder`), with the way back: one of
    ``gens`` that can be queried, else a new build; None when queries can be encoded (or that cannot be told)."""
    why = query_of(query_encoder, m.encoder_id)[1]
    if why is None:
        return None
    fits = fitting(gens, query_encoder)
    way = f"`recsys index rollback --to {fits[-1]}` serves one it can" if fits else "run `recsys build`"
    said = f"search is off: index generation {m.generation_id} was built with encoder {m.encoder_id}, but {why}; {way}"
    log.error("%s", said)
    return said


def refuse_unservable(target: Manifest, served: Manifest | None, gens: Sequence[Manifest],
                      query_encoder: QueryEncoder | None) -> None:
    """IncompatibleArtifact when queries would fail against ``target`` (see :func:`recsys.index.layout.rollback`):
    one the ``query_encoder`` cannot serve, or without it one of another encoder or dimension than the ``served``
    one; but never one where nothing gets worse (none is served, or the served one has its encoder)."""
    q, why = query_of(query_encoder, target.encoder_id)
    if serves(q, target) or served is None or (served.encoder_id, served.dim) == (target.encoder_id, target.dim):
        return  # queries can use it, or nothing gets worse (none served, or one of the same encoder)
    built = f"index generation {target.generation_id} was built with encoder {target.encoder_id!r} ({target.dim}-d)"
    if query_encoder is None or (q is None and why is None):
        raise IncompatibleArtifact(  # the configured encoder is not known: the served generation's encoder works now
            f"{built}, the served {served.generation_id} with {served.encoder_id!r} ({served.dim}-d): every query "
            "would fail against it; nothing changed. Pick one of the served encoder (`recsys index list`), or pass "
            "--force if the encoder was switched back")
    if why is not None:
        cause, back = why, "switch RECSYS_ENCODER__RUNTIME (or the checkpoint) back as well"
        none = "No generation here can be queried with the configured towers: run `recsys build`"
    else:
        assert q is not None
        cause = f"queries are encoded with the configured encoder {q[0]!r}{f' ({q[1]}-d)' if q[1] else ''}"
        back = "switch the encoder (RECSYS_ENCODER__PRESET) to that one as well"
        none = "No generation here was built with the configured encoder: run `recsys index build`"
    fits = fitting(gens, query_encoder)
    raise IncompatibleArtifact(
        f"{built}, but {cause}: every query would fail against it; nothing changed. "
        + (f"The configured encoder serves {', '.join(fits[-3:])} (`recsys index list`)" if fits else none)
        + f"; pass --force only if you {back}")
