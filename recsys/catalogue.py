"""Writes through the service layer: events, users and items, and the delta index that serves new items at once.

Reached as :attr:`recsys.service.Recommender.catalogue` (the same store and settings). No write touches the read
path's result cache: a cached list's key holds the user's event ids and the removed items' version, so a new or
deleted event or item is a different key; a new delta generation is served on the :meth:`index_changes` refresh.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from recsys.config import Settings
from recsys.errors import EncoderError, IndexError_, RecsysError
from recsys.store import Store
from recsys.store.events import EventResult

log = logging.getLogger(__name__)


class NotPublished(RecsysError):
    """Items stored whose embedding or publishing to the index then failed (:meth:`Catalogue.upsert_items`): the
    cause's code and status, its message prefixed with what was stored and followed by what publishes them."""

    results: list[dict[str, Any]]
    """The per-item results, each stored one with this message as its ``warning`` (a bulk write's answer)."""

    @classmethod
    def of(cls, e: RecsysError) -> NotPublished:
        err = cls(f"the items were stored, but publishing them to the index failed: {e.message}. They are served "
                  "once published: by the next item write that succeeds once that is fixed, or by `recsys embed` "
                  "then `recsys index build` (or `recsys build`)")
        err.code, err.status, err.results = e.code, e.status, []
        return err


class Catalogue:
    """Catalogue and feedback writes over one store and one data directory; ``refresh`` is the read path's (it
    serves a delta generation as soon as :meth:`index_changes` publishes one)."""

    def __init__(self, settings: Settings, store: Store, refresh: Callable[[], Any] | None = None) -> None:
        self.settings = settings
        self.store = store
        self._refresh = refresh
        self._changes_lock = threading.Lock()
        self._changes_runs = 0  # index_changes runs started; the last finished one and its report:
        self._changes_last: tuple[int, dict[str, Any]] | None = None

    def ingest_events(self, events: Sequence[Mapping[str, Any]]) -> list[EventResult]:
        """Store events (committed before this returns); each gets a stored / duplicate / error result."""
        from recsys.store.events import ingest_events

        return ingest_events(self.store, events)

    def unknown_items(self, item_ids: Sequence[str]) -> list[str]:
        """The ids among ``item_ids`` that the store does not hold, or holds as deleted, in their first order (none:
        []); one indexed read."""
        from sqlalchemy import select

        from recsys.store.tables import Item

        wanted = list(dict.fromkeys(item_ids))
        with self.store.session() as s:
            known = set(s.scalars(select(Item.external_id).where(Item.external_id.in_(wanted), ~Item.deleted)))
        return [i for i in wanted if i not in known]

    def delete_user(self, user_id: str) -> int:
        """Remove a user and their events (their cached lists stop matching: the key holds the event ids)."""
        from recsys.store.events import delete_user

        return delete_user(self.store, user_id)

    def upsert_items(self, items: Sequence[Mapping[str, Any]], *, index: bool = True) -> list[dict[str, Any]]:
        """Insert or update items (canonical fields of the generic importer); per-item results.

        With ``index``, new and changed items are embedded and served through a delta generation right away. Where
        that fails after the items were stored (a full disk under the vectors or the index), the error says they
        were stored (:class:`NotPublished`, whose ``results`` give each stored item that message as its warning).
        Safe to call from many threads, processes and replicas at once, also for the same new item id.
        """
        from pathlib import Path

        from recsys.store.importers.generic import item_record

        results: list[dict[str, Any]] = []
        records = []
        for i, raw in enumerate(items):
            given = raw.get("item_id")
            item_id = None if given is None else str(given)  # a record without an id: null, not "None"
            try:
                records.append(item_record(dict(raw), Path.cwd()))
                results.append({"index": i, "item_id": item_id, "status": "stored"})
            except (ValueError, TypeError) as e:
                results.append({"index": i, "item_id": item_id, "status": "error", "error": str(e)})
        if records:
            self._write_items(records)
            if index:
                try:
                    self._publish()
                except NotPublished as e:  # stored all the same: each stored result says what is still to come
                    e.results = [{**r, "warning": e.message} if r["status"] == "stored" else r for r in results]
                    raise
                self._media_problems(results)
        return results

    def _publish(self) -> None:
        """:meth:`index_changes` for an upsert, unless this database does not know most of the served generation's
        items (another deployment's, or an empty one): then the request fails and says why, the items stay stored
        and the data directory is left alone (not even embedded into: its vectors snapshot is shared too)."""
        from recsys.index.catalog import index_root
        from recsys.index.store_match import StoreMismatch, refuse_mismatch

        try:
            refuse_mismatch(self.store, self.settings, index_root(self.settings), "published")
            self.index_changes()
        except StoreMismatch as e:
            log.error("items stored but not published: %s", e.message)
            raise StoreMismatch(f"the items were stored, but publishing them to the index was refused: {e.message}"
                                ) from e
        except (EncoderError, IndexError_) as e:  # embedding or publishing: the database write had committed
            log.error("items stored but not published: %s", e.message)
            raise NotPublished.of(e) from e

    def _media_problems(self, results: list[dict[str, Any]]) -> None:
        """Each stored item whose image could not be used (missing, too large, not an image) gets a ``warning``
        with the reason, found when it was embedded: the item is stored and served without it."""
        from sqlalchemy import select

        from recsys.store.tables import Item, ItemMedia

        stored = [r["item_id"] for r in results if r["status"] == "stored"]
        problems: dict[str, str] = {}
        with self.store.session() as s:
            for i in range(0, len(stored), 500):
                q = (select(Item.external_id, ItemMedia.error).join(ItemMedia, ItemMedia.item_id == Item.id)
                     .where(Item.external_id.in_(stored[i: i + 500]), ItemMedia.status == "error"))
                for item_id, error in s.execute(q):
                    problems.setdefault(item_id, error or "unreadable")
        for r in results:
            if r["item_id"] in problems:
                r["warning"] = f"image not used: {problems[r['item_id']]}; the item is stored without it"

    def _write_items(self, records: Sequence[Any]) -> None:
        from sqlalchemy.exc import IntegrityError

        from recsys.store.importers.report import TableCounts
        from recsys.store.importers.writer import upsert_items

        # The writer reads which ids exist, then inserts the others: a concurrent writer of the same new id may
        # insert it in between (a unique violation). Tried again, the row exists and is updated instead.
        for attempt in range(3):
            try:
                with self.store.session() as s:
                    upsert_items(s, records, TableCounts())
                return
            except IntegrityError:
                if attempt == 2:
                    raise
                log.info("items written concurrently by another writer; writing again")

    def delete_item(self, item_id: str) -> None:
        """Mark the item deleted: no list shows it from the next request on (the removed items' version moved)."""
        from recsys.store.items import set_flags

        with self.store.session() as s:
            set_flags(s, [item_id], deleted=True)

    def index_changes(self) -> dict[str, Any]:
        """Embed new/changed items and publish them as a new generation, then serve it: a delta over the served one,
        or a full build when there is none yet, the encoder changed, files are damaged or more than
        ``index.delta_max_fraction`` of the catalogue changed (``build_from_catalog(mode="auto")``).

        One run at a time per data directory (threads, worker processes and replicas sharing it: the embedding
        snapshot and the generations are files). A caller whose items a run started after its write already
        covered takes that run's report instead of running again, so a burst of writers costs a few runs."""
        from recsys.encoders import embed_catalog
        from recsys.index import build_from_catalog, index_root
        from recsys.index.layout import build_lock

        seen = self._changes_runs
        with self._changes_lock:
            last = self._changes_last
            if last is not None and last[0] > seen:
                return last[1]
            self._changes_runs += 1
            run = self._changes_runs
            with build_lock(index_root(self.settings), "changes.lock"):
                embed_catalog(self.store, self.settings)
                report = build_from_catalog(self.store, self.settings, mode="auto")
            self._changes_last = (run, report)
        if self._refresh is not None:
            self._refresh()
        return report
