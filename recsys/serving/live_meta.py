"""Filters on the catalogue as it is now, not as it was when the served generation was built.

A price, category, stock or attribute feed (``recsys import items``) changes the store and publishes no generation,
so filters evaluated on the generation's build-time metadata passed items on their old values while the results
showed the new ones. A reader's metadata is therefore the built one patched with the items changed since the build
(:meth:`recsys.index.IndexReader.apply_live_meta`), read again only when the store's item-details version
(``catalogue_state.details_version``, moved by database triggers: migrations 0009 and 0011) passes the one the
reader was patched to. Only requests with a filter sync (an unfiltered one never consults the metadata).
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import TYPE_CHECKING

from recsys.errors import StoreUnavailable
from recsys.store.queries import DETAILS_VERSION, items_changed_since

if TYPE_CHECKING:
    from recsys.index import IndexReader, ItemFilter
    from recsys.store import Store

log = logging.getLogger(__name__)

_seen: weakref.WeakSet[IndexReader] = weakref.WeakSet()
"""The readers :func:`on_load` synced (a reader goes with its generation)."""
_lock = threading.Lock()
"""One patch at a time: a second request behind the same version waits for the first, then finds nothing to do."""


def details_version(store: Store) -> int | None:
    """The store's item-details version (one tiny read); None where the schema keeps none."""
    rows = store.read(DETAILS_VERSION, {})
    return int(rows[0][0]) if rows and rows[0][0] is not None else None


def _behind(reader: IndexReader, version: int | None) -> bool:
    # versions only go up: a request that read an older one than a concurrent request applied has nothing to do
    return version is not None and (reader.meta_version is None or version > reader.meta_version)


def sync(store: Store, reader: IndexReader, version: int | None = None) -> bool:
    """Bring ``reader``'s metadata to the store's item-details ``version`` (read now when None); True when it was
    patched. The changes are read after the version was, so the metadata is at least as new as the version it is
    recorded under (a list cached under that version was never filtered on older values)."""
    if version is None:
        version = details_version(store)
    if not _behind(reader, version):
        return False
    with _lock:
        if not _behind(reader, version):
            return False
        with store.reading() as c:
            changes = items_changed_since(c, reader.base_meta.newest_update)
        reader.apply_live_meta(changes, version)
    log.debug("index generation %s filters on the items' details of version %s (%d changed since its build)",
              reader.generation_id, version, len(changes))
    return True


def follow(store: Store, reader: IndexReader, filter: ItemFilter | None, version: int | None = None) -> IndexReader:
    """``reader``, :func:`sync`-ed first when ``filter`` filters (an unfiltered request reads nothing)."""
    if filter is not None and not filter.is_empty:
        sync(store, reader, version)
    return reader


def allowed_ids(store: Store, reader: IndexReader, filter: ItemFilter | None,
                version: int | None = None) -> list[str] | None:
    """The ids a list may hold under ``filter`` on the catalogue as it is (synced to ``version``), None: any."""
    if filter is None or filter.is_empty:
        return None
    return follow(store, reader, filter, version).allowed_ids(filter)


def on_load(store: Store, reader: IndexReader) -> IndexReader:
    """``reader``, :func:`sync`-ed the first time it is seen (a generation just loaded), so the first filtered request
    (and a command's check of its filter's values against the metadata) finds it patched. A store that cannot be read
    now leaves it to that request."""
    if reader in _seen:
        return reader
    _seen.add(reader)
    try:
        sync(store, reader)
    except StoreUnavailable as e:
        log.warning("index generation %s filters on its build's item details until the store answers: %s",
                    reader.generation_id, e)
    return reader
