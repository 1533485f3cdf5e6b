"""The offline jobs behind ``recsys build``, ``recsys train`` and ``recsys evaluate`` (DESIGN.md section 4).

Reached as :attr:`recsys.service.Recommender.jobs`: the same store and settings, and the read path itself, which
serves what a job publishes as soon as it is done and is the path ``evaluate --test-events`` asks through.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recsys.errors import ConfigError, IncompatibleArtifact, RankerError, TooFewPairs, ValidationFailed
from recsys.evaluation.models import asked_at, fitted_model, network_note
from recsys.index.pairing import JOBS_LOCK
from recsys.serving.generations import vectors_of_index
from recsys.store.queries import events_frame, frame_watermark, items_frame, training_watermark

if TYPE_CHECKING:

    import pandas as pd

    from recsys.config import Settings
    from recsys.encoders import TowerEncoder
    from recsys.evaluation import Batch
    from recsys.evaluation.own_events import ReadOptions
    from recsys.index import IndexReader
    from recsys.service import Recommender

log = logging.getLogger(__name__)

Progress = Callable[..., None]


class Jobs:
    """Build, train and evaluate over the store and data directory of ``recommender``."""

    def __init__(self, recommender: Recommender) -> None:
        self.recommender = recommender
        self.settings = recommender.settings
        self.store = recommender.store

    def train(self, progress: Progress | None = None) -> dict[str, Any]:
        """Train the ranker on every stored event over the newest index's vectors; a new current generation. One
        build or train at a time per data directory (a second waits): a ranker trained on the index a build is
        about to replace would be published after the build's own and match no served vectors."""
        with jobs_lock(self.settings):
            self._check_rankers_writable()
            report = self._train(self.recommender.generations.latest_index(), progress)
        self.recommender.refresh()
        return report

    def _check_rankers_writable(self, space: bool = True) -> None:
        """A rankers directory that cannot be written, or (``space``) whose disk has no room for a ranker like the
        current one, is said now, not when the trained ranker is saved after minutes of training."""
        from recsys.index.locks import check_space, check_writable, space_needed
        from recsys.ranking import rankers_root
        from recsys.ranking.artifact import SAVE_LOCK, current_generation

        root = rankers_root(self.settings)
        check_writable(root, "train a ranker", SAVE_LOCK)
        if space:
            check_space(root, "train a ranker", space_needed(current_generation(root)), RankerError)

    def _train(self, reader: IndexReader, progress: Progress | None) -> dict[str, Any]:
        from recsys.ranking import train_ranker

        with self.store.session() as s:
            events = events_frame(s, training=True)  # users replayed by `evaluate --test-events` never train
            items = items_frame(s)
        watermark = frame_watermark(events)  # of the rows read, so it names exactly what was trained on
        vectors = vectors_of_index(self.settings, reader)
        pipe, path = train_ranker(events, items, vectors, self.settings, search=reader, progress=progress,
                                  manifest={"events_watermark": watermark})
        return {"ranker": pipe.ranker_id, "path": str(path), "events": len(events),
                "metrics": pipe.manifest.get("metrics", {}), **network_note(pipe.manifest, pipe.net is not None)}

    def _encoder_fitted(self) -> bool:
        """Whether the configured preset has current fitted heads that this version of recsys can load (then
        loaded: the read path's query encoder)."""
        from recsys.encoders import get_encoder, get_preset
        from recsys.encoders.encoder import current_heads_dir
        from recsys.errors import IncompatibleArtifact

        if current_heads_dir(self.settings, get_preset(self.settings.encoder.preset, self.settings)) is None:
            return False
        try:
            self.recommender.use_encoder(get_encoder(self.settings))
        except IncompatibleArtifact:
            return False
        return True

    def build(self, progress: Progress | None = None, *, force: bool = False,
              keep_ranker: bool = False) -> dict[str, Any]:
        """Fit the encoder if needed, embed, index, train. Each stage skips itself when its inputs are unchanged,
        so a build is idempotent, and an interrupted one resumes from the last finished stage. ``keep_ranker``
        (``recsys demo``): a loadable ranker trained as configured is kept even when events arrived since, which
        each shopper's lists count per request anyway (a like in the explorer must not cost a retrain).

        The new index generation is served only once its ranker is trained (the pair switches together): with new
        encoder heads the served ranker cannot rank its vectors, and every server would answer recommendations
        with 503 meanwhile, for good if the build were interrupted there. New heads are made current at that
        switch too, not when fitted: a build killed before it leaves the heads, index and ranker as they were, and
        a later `recsys index build` embeds with the heads the served ranker was trained on."""
        from recsys.index import index_root
        from recsys.index.store_match import refuse_mismatch

        with jobs_lock(self.settings):
            if not force:  # before the encoder's heads or the vectors, shared under the data directory, are written
                refuse_mismatch(self.store, self.settings, index_root(self.settings), "fitted, embedded or published")
            return self._build(progress, force, keep_ranker)

    def _build(self, progress: Progress | None, force: bool, keep_ranker: bool) -> dict[str, Any]:
        from recsys.encoders import embed_catalog
        from recsys.encoders.encoder import set_current_heads
        from recsys.index import IndexReader, build_from_catalog, current_id, index_root, publish
        from recsys.index.catalog import rebase_for
        from recsys.index.pairing import drop_pending
        from recsys.ranking import rankers_root, read_manifest
        from recsys.ranking.artifact import current_generation
        from recsys.ranking.artifact import damage as ranker_damage
        from recsys.ranking.generations import NetlessRefused

        report: dict[str, Any] = {}
        t = time.perf_counter()
        self._check_rankers_writable(space=False)  # the room for a ranker only once this build is to train one
        root = index_root(self.settings)
        drop_pending(root)  # this build holds the jobs lock: a PENDING now is an interrupted build's
        report["encoder_fit"], fitted, vectors = self._fit_heads(progress, force)
        report["embed"] = _as_dict(embed_catalog(self.store, self.settings, _stage(progress, "embed"),
                                                 encoder=fitted))
        report["index"] = build_from_catalog(self.store, self.settings, _stage(progress, "index"),
                                             mode="full" if force else "auto", vectors=vectors, switch=False,
                                             force=force)
        gid = report["index"]["generation"]
        # an unchanged index is the served one, already loaded: a 10M-item generation is not read twice
        reader = (self.recommender.generations.latest_index(strict=True) if current_id(root) == gid
                  else IndexReader.open(root, generation=gid, settings=self.settings.index))
        with self.store.session() as s:
            watermark = training_watermark(s)  # events replayed by an evaluation are no reason to retrain
        rpath = current_generation(rankers_root(self.settings))
        problem = ranker_damage(rpath) if rpath else None
        if problem:  # what serving could not load is retrained, not skipped
            log.warning("the current ranker %s cannot be loaded (%s); training a new one", rpath, problem)
        manifest = read_manifest(rpath) if rpath and not problem else {}
        usable = (not problem and bool(manifest) and _trained_as_configured(manifest, self.settings)
                  and manifest.get("encoder_id") == reader.manifest.encoder_id)
        same = usable and manifest.get("events_watermark") == watermark
        kept: NetlessRefused | None = None
        if force or not (same or (usable and keep_ranker)):
            self._check_rankers_writable()  # before minutes of training; what the stages above made is kept
            try:
                report["train"] = self._train(reader, _stage(progress, "train"))
            except NetlessRefused as e:  # the kept ranker fits this index's vectors: both are served, then it fails
                kept, report["train"] = e, f"failed: {e.message}"
        elif same:
            report["train"] = "skipped (no new events since the current ranker)"
        else:
            report["train"] = ("skipped (the current ranker is kept although events changed since it was trained: "
                               "each shopper's new events count in their lists at once; `recsys train` refits it)")
        # The switch: the ranker is current since its training ended, then the heads, then the index. Killed after
        # the heads, a `recsys index build` serves their vectors, which that ranker ranks; with the heads last it
        # would index the old heads' vectors, which it cannot (between ranker and heads: the next build retrains)
        if fitted is not None:
            set_current_heads(self.settings, fitted.preset, str(fitted.version))
            self.recommender.use_encoder(None)
        # an API upsert may have published a delta while this trained: its changes are carried over, not dropped
        publish(root, reader.generation_id, self.settings.index.keep_generations,
                rebase_for(self.store, self.settings, report["index"], vectors))
        self.recommender.refresh()
        if kept is not None:
            raise kept
        report["seconds"] = round(time.perf_counter() - t, 1)
        return report

    def _fit_heads(self, progress: Progress | None, force: bool) -> tuple[Any, TowerEncoder | None, Any]:
        """(report, fitted encoder, its vectors provider for the index) of a fit when one is due, saved and not made
        current (the build does that at its switch); else (why skipped, None, None): the current heads serve."""
        from recsys.encoders import fit_encoder, get_encoder, load_item_vectors

        if not force and self._encoder_fitted():
            return "skipped (fitted heads present)", None, None
        try:
            fit = fit_encoder(self.store, self.settings, _stage(progress, "encoder fit"), switch=False)
        except TooFewPairs as e:
            if force:
                raise
            # a first-day shop (text only, two items): the towers' own features still place items by their text
            log.warning("the encoder's heads cannot be fitted (%s). The build goes on with unfitted heads: search and "
                        "similar items work from the towers' own features, and a later build fits the heads once "
                        "the catalogue has the pairs", e.message)
            return f"skipped, the heads stay unfitted: {e.message}", None, None
        fitted = get_encoder(self.settings, version=fit.version)

        def vectors(settings: Settings, store: Any) -> Any:  # the whole snapshot, as the default provider reads it
            return load_item_vectors(settings, encoder=fitted)

        return fit.to_dict(), fitted, vectors

    def evaluate(self, k: int = 20, *, test_events: Any = None, fmt: str | None = None,
                 protocol: str | None = None, part: str | None = "test", read_options: ReadOptions | None = None,
                 progress: Progress | None = None) -> dict[str, Any]:
        """``recsys evaluate`` (DESIGN.md section 4): ours vs the baselines on a temporal leave-last-out split.

        On the stored events a ranker is fitted on the split's training part only (the served one has seen the
        targets) and the users of ``part`` (by salted hash; ``validation`` for tuning, ``test`` reported once, None
        for everyone) are evaluated as of their target time. With ``test_events`` (users unknown to the store) their
        histories are replayed through the catalogue's ``ingest_events``, and each user is asked through the read
        path's ``recommend`` with ``now`` at the target time: the very path the API serves. Replayed users are
        marked as evaluation users, so a rerun of the same file works and no later ``train`` learns from them.
        ``fmt`` names the file's dataset (``hm``, ``movielens``) or ``events``, a shop's own events file, which is
        cut by ``protocol`` as the stored split is (``auto``: by its purchase days when the shop has purchases) and
        read with ``read_options`` (the words ``recsys import events`` was given: column map, delimiter, type).
        """
        from recsys.evaluation import evaluate_store, evaluate_test_events
        from recsys.evaluation.splits import (
            TEST_EVENT_FORMATS,
            TEST_EVENT_FORMATS_SAID,
            refuse_format_words,
            refuse_read_options,
        )
        from recsys.store.limits import MAX_K
        from recsys.store.queries import evaluation_users

        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:  # a library call has no CLI check
            raise ValidationFailed(f"k is the list length the metrics are taken at: a whole number from 1 to {MAX_K}, "
                                   f"not {k!r}")
        if test_events is not None and fmt not in TEST_EVENT_FORMATS:  # before anything is read
            raise ValidationFailed(f"--test-events needs --format: {TEST_EVENT_FORMATS_SAID}"
                                   + (f"; got {fmt!r}" if fmt else ""))
        if read_options is not None and read_options.given() and test_events is None:
            raise ValidationFailed("--map, --delimiter and --type say how to read --test-events FILE --format events; "
                                   "the stored events need none")
        refuse_read_options(fmt, read_options)
        refuse_format_words(fmt, protocol, test_events)
        reader = self.recommender.index
        vectors = vectors_of_index(self.settings, reader)
        with self.store.session() as s:
            held = evaluation_users(s)
            events = events_frame(s)
            items = items_frame(s)
            users = set(events["user_id"].astype(str))  # a stored user without events (u.user) leaks nothing
        events = events[~events["user_id"].isin(held)]
        removed = self.recommender.removed_items()
        common: dict[str, Any] = {"item_ids": list(reader.item_ids), "vectors": vectors.fused, "k": k,
                                  "content_vectors": getattr(vectors, "tower_text", None), "exclude": removed}
        if test_events is not None:
            if self.recommender.ranker.cobuy is not None:  # checked before the replay stores anything
                raise ValidationFailed(
                    "the served ranker's co-purchase space (RECSYS_RANKING__PARAMS='{\"cobuy\": true}') was fitted on "
                    "every stored purchase, later ones than these shoppers' targets included: it would see their "
                    "future. Evaluate withheld shoppers with a ranker trained without it "
                    "(RECSYS_RANKING__PARAMS='{\"cobuy\": false}', then `recsys train`), or the stored split, which "
                    "fits the space on the events before its earliest target")
            result = evaluate_test_events(Path(test_events), str(fmt), store_events=events,  # checked above
                                          replay=partial(self._replay, Path(test_events).name, held, set()),
                                          make_ours=self._served_model, known_users=users - held,
                                          max_bad_fraction=self.settings.store.max_bad_fraction,
                                          protocol=protocol or "auto", options=read_options, **common)
            served = self.recommender.ranker
            ours = network_note(served.manifest, served.net is not None)
        else:
            fitted: dict[str, Any] = {}
            result = evaluate_store(events, make_ours=partial(fitted_model, self.settings, reader, items, vectors,
                                                              removed, _stage(progress, "fitting the ranker"), fitted),
                                    protocol=protocol or "auto", part=part, **common)
            ours = fitted
        result.setdefault("index_generation", reader.generation_id)
        result["ours"] = ours  # added beside metrics: whether "ours" is a trained ranker or the candidate order
        return result

    def _replay(self, source: str, held: set[str], seen: set[str],
                records: Sequence[Mapping[str, Any]]) -> Sequence[Any]:
        """Store a batch of withheld users' events through the live path, their users marked as evaluation users.
        An id an earlier run replayed (``held``) is deleted first, on its first batch of this run (``seen``): its
        served list would read that run's events too, which the baselines do not see (a shorter history of the same
        shoppers would find its own targets already bought)."""
        from recsys.store.events import delete_user
        from recsys.store.queries import mark_evaluation_users

        users = {str(r["user_id"]) for r in records}
        for user in sorted((users & held) - seen):
            delete_user(self.store, user)
        seen |= users
        out = self.recommender.catalogue.ingest_events(records)
        mark_evaluation_users(self.store, users, source)
        return out

    def _served_model(self, split: Any) -> Batch:
        """Ours for replayed users: the served ranker, asked through ``recommend`` at each user's target time (see
        :func:`~recsys.evaluation.models.asked_at`)."""
        from recsys.errors import BeforeData
        from recsys.evaluation import Batch

        rec = self.recommender
        rec.refresh()  # as a server would after the replay: with ``ranking.live_stats_s`` the statistics count it

        def one(user: str, k: int) -> list[str]:
            try:
                return [r.item_id for r in rec.recommend(user, k, now=asked_at(split, user), fresh=True)]
            except BeforeData:  # a target before everything the ranker knows: no list, as a client would get
                return []

        def fn(users: Sequence[str], hists: Sequence[pd.DataFrame], k: int) -> list[list[str]]:
            return [one(u, k) for u in users]

        return Batch(fn)


def _stage(progress: Progress | None, name: str) -> Any:
    """``progress`` with each update named after the build stage: ``update(done, total)`` becomes
    ``progress(name, done, total)`` and ``update(step, done, total)`` ``progress("name: step", ...)``."""
    if progress is None:
        return None

    def update(step: Any, done: Any = None, total: Any = None) -> None:
        if isinstance(step, str):
            progress(f"{name}: {step}", done, total)
        else:
            progress(name, step, done)

    return update


@contextlib.contextmanager
def jobs_lock(settings: Settings) -> Iterator[None]:
    """One build or train at a time per data directory, across processes (released by the OS if one dies)."""
    from filelock import FileLock, Timeout

    lock = FileLock(settings.home / JOBS_LOCK)
    try:
        settings.home.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.warning("another build or train is running in %s; waiting for it to finish", settings.home)
            lock.acquire()
    except OSError as e:
        raise ConfigError(f"cannot take the jobs lock {settings.home / JOBS_LOCK} ({e.strerror or e}): make "
                          "RECSYS_HOME writable (or free space there)") from e
    try:
        yield
    finally:
        lock.release()


def _as_dict(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    return obj


def _trained_as_configured(manifest: dict[str, Any], settings: Settings) -> bool:
    """The current ranker is one this recsys reads (format, feature list) with the knobs the settings ask for: after
    an upgrade or a change of ``RECSYS_RANKING__PARAMS`` the next build retrains rather than serving nothing or the
    old knobs."""
    from recsys.ranking import RankingParams
    from recsys.ranking.artifact import check_compatible

    try:
        check_compatible(manifest, "current")
    except IncompatibleArtifact:
        return False
    want = RankingParams.from_settings(settings).to_dict()
    # a knob a later recsys removed (it did nothing), or added (its default is what the ranker was trained with),
    # is no reason to retrain
    return RankingParams.from_dict(manifest.get("params") or {}).to_dict() == want
