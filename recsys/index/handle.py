"""A served index that follows the ``CURRENT`` pointer: readers keep the old generation until the new one is loaded.

``refresh()`` is cheap when nothing changed (one small file read). A new generation is loaded off to the side and
swapped in with one reference assignment, so concurrent searches never see a half-loaded index; a generation that
fails to load is logged and the old one keeps serving, and it is tried again only after ``RETRY_S`` (a load hashes
the generation's files: a damaged one must not cost that on every refresh round). With nothing served yet (a strict
refresh, e.g. each request of a server that started on a damaged generation) the same failure is raised again
within ``RETRY_S`` instead of hashing the files once more.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from recsys.errors import RecsysError
from recsys.index import layout
from recsys.index.reader import IndexReader

if TYPE_CHECKING:
    from recsys.config import IndexSettings

log = logging.getLogger(__name__)

RETRY_S = 300.0
"""Seconds before a generation that failed to load is tried again (unless ``CURRENT`` names another one)."""


class IndexHandle:
    """The current generation under ``root``, reloaded when the pointer moves (:meth:`refresh`)."""

    def __init__(self, root: Path, *, encoder_id: str | None = None, dim: int | None = None,
                 settings: IndexSettings | None = None) -> None:
        self.root, self.encoder_id, self.dim, self.settings = Path(root), encoder_id, dim, settings
        self._reader: IndexReader | None = None
        self._lock = threading.Lock()
        self._failed: tuple[str, float, RecsysError] | None = None
        """The generation that last failed to load, when, and why."""

    def get(self) -> IndexReader:
        """The loaded generation (loading it on first use). NoIndex when none was built."""
        reader = self._reader
        if reader is None:
            self.refresh(strict=True)
            reader = self._reader
        if reader is None:
            raise layout.no_index(self.root)
        return reader

    @property
    def loaded(self) -> bool:
        return self._reader is not None

    def refresh(self, *, strict: bool = False) -> bool:
        """Load the current generation if it is not the one served. True when a new one was swapped in.
        With ``strict`` a load failure raises; otherwise it is logged and the old generation keeps serving."""
        with self._lock:
            cur = layout.current_id(self.root)
            if cur is None:
                if strict:
                    raise layout.no_index(self.root)
                return False
            if self._reader is not None and self._reader.generation_id == cur:
                return False
            failed = self._failed
            if failed is not None and failed[0] == cur and time.monotonic() - failed[1] < RETRY_S:
                if strict:
                    raise failed[2]
                return False
            try:
                reader = IndexReader.open(self.root, generation=cur, encoder_id=self.encoder_id, dim=self.dim,
                                          settings=self.settings)
            except RecsysError as e:
                self._failed = (cur, time.monotonic(), e)
                if strict:
                    raise
                log.exception("index generation %s could not be loaded; still serving %s", cur,
                              self._reader.generation_id if self._reader else None)
                return False
            self._reader = reader
            log.info("serving index generation %s (%d items)", cur, len(reader))
            return True
